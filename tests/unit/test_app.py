"""What the example app adds to hello world: the release id, ProxyFix, and a secret-safe /healthz."""
import importlib
import sys
from pathlib import Path

import pytest

APP_DIR = Path(__file__).resolve().parents[2] / "app"


@pytest.fixture
def serve(monkeypatch, tmp_path):
    """Import app/serve.py from a copy in tmp_path, so a REVISION file can be placed beside it."""
    (tmp_path / "serve.py").write_text((APP_DIR / "serve.py").read_text())
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("serve", None)
    yield tmp_path
    sys.modules.pop("serve", None)


def load(monkeypatch, secret=None):
    if secret is None:
        monkeypatch.delenv("SECRET_KEY", raising=False)
    else:
        monkeypatch.setenv("SECRET_KEY", secret)
    sys.modules.pop("serve", None)
    return importlib.import_module("serve").app.test_client()


def test_hello_world(serve, monkeypatch):
    assert load(monkeypatch).get("/").data == b"Hello World!"


def test_healthz_names_the_release_written_beside_the_code(serve, monkeypatch):
    (serve / "REVISION").write_text("20261126-230000-abc1234\n")
    answer = load(monkeypatch).get("/healthz")
    assert answer.status_code == 200
    assert answer.json["release"] == "20261126-230000-abc1234"


def test_healthz_without_revision_says_dev(serve, monkeypatch):
    assert load(monkeypatch).get("/healthz").json["release"] == "dev"


def test_healthz_says_whether_secret_is_set_never_its_value(serve, monkeypatch):
    answer = load(monkeypatch, secret="s3cr3t-value").get("/healthz")
    assert answer.json["secret_key_set"] is True
    assert b"s3cr3t-value" not in answer.data
    assert load(monkeypatch).get("/healthz").json["secret_key_set"] is False


def test_proxyfix_trusts_nginx_forwarded_headers(serve, monkeypatch):
    client = load(monkeypatch)
    app = sys.modules["serve"].app

    @app.route("/_probe")
    def probe():
        from flask import request

        return f"{request.scheme} {request.remote_addr} {request.host}"

    answer = client.get(
        "/_probe",
        headers={"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.9",
                 "X-Forwarded-Host": "example.org"},
    )
    assert answer.data == b"https 203.0.113.9 example.org"


def test_gunicorn_config_never_preloads():
    """The kit's config (shipped in every release) with the app's own file read after it."""
    import runpy
    import shutil
    import tempfile

    with tempfile.TemporaryDirectory() as release:
        kit = Path(release) / ".flasksample"
        kit.mkdir()
        for name in (APP_DIR.parent / "deploy" / "kit").glob("*.py"):
            shutil.copy(name, kit / name.name)
        shutil.copy(APP_DIR.parent / "deploy" / "kit" / "gunicorn_conf.py", kit / "gunicorn.conf.py")
        shutil.copy(APP_DIR / "gunicorn.conf.py", Path(release) / "gunicorn.conf.py")
        (Path(release) / "gunicorn.conf.py").write_text(
            (Path(release) / "gunicorn.conf.py").read_text() + "timeout = 99\n")
        config = runpy.run_path(str(kit / "gunicorn.conf.py"))
    assert config["preload_app"] is False
    assert config["workers"] >= 1
    assert config["timeout"] == 99  # the app's own file wins
    assert callable(config["post_worker_init"])
