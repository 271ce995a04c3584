"""The example app the kit deploys: the classic hello-world Flask app, made production-ready.

`/` answers `Hello World!` as in the seed; `/healthz` tells the deploy tooling which release is
running (read from the REVISION file the kit writes next to this module, so it names the code
the worker really imported), and whether SECRET_KEY is set — never its value.
`python serve.py` still runs Flask's development server on port 8080.
"""
import os
from pathlib import Path

from flask import Flask, jsonify
from werkzeug.middleware.proxy_fix import ProxyFix

HERE = Path(__file__).resolve().parent


def read_release() -> str:
    """The release id the kit wrote at deploy time, or "dev" when run from a checkout."""
    try:
        return (HERE / "REVISION").read_text().strip() or "dev"
    except OSError:
        return "dev"


def create_app() -> Flask:
    app = Flask(__name__)
    # nginx is the only hop in front of us: trust one level of X-Forwarded-* headers.
    app.wsgi_app = ProxyFix(app.wsgi_app, x_for=1, x_proto=1, x_host=1, x_port=1)
    app.config["RELEASE"] = read_release()
    if os.environ.get("SECRET_KEY"):
        app.secret_key = os.environ["SECRET_KEY"]

    @app.route("/")
    def hello():
        return "Hello World!"

    @app.route("/healthz")
    def healthz():
        return jsonify(
            status="ok",
            release=app.config["RELEASE"],
            secret_key_set=bool(app.secret_key),
        )

    return app


app = create_app()

if __name__ == "__main__":
    app.run(host="0.0.0.0", port=8080)
