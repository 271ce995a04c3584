"""The baseline for the kit's cold figure: a plain hand-written Fabric script, not kit code.

What a user would write from the Fabric, gunicorn and nginx docs to put app/ on a bare Debian
host: apt-get install nginx python3-venv, a venv with `pip install -r requirements.txt`, the
code copied over, a systemd unit and an nginx site, started. No checks, no releases, no
rollback. bench/cold.py times it against the kit's first `fab setup` + `fab deploy`.

    python -m bench.handwritten -S SSH_CONFIG HOST APP_DIR
"""
from __future__ import annotations

import argparse
import io
import tarfile

from fabric import Config, Connection

UNIT = """\
[Unit]
Description=hello (gunicorn)
After=network.target

[Service]
User=hello
Group=hello
WorkingDirectory=/srv/hello/app
RuntimeDirectory=hello
ExecStart=/srv/hello/venv/bin/gunicorn --workers 2 --bind unix:/run/hello/hello.sock serve:app
Restart=always

[Install]
WantedBy=multi-user.target
"""

SITE = """\
server {
    listen 80 default_server;
    location / {
        proxy_pass http://unix:/run/hello/hello.sock;
        proxy_set_header Host $host;
        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        proxy_set_header X-Forwarded-Proto $scheme;
    }
}
"""


def app_tarball(app_dir: str) -> io.BytesIO:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        tar.add(app_dir, arcname="app", filter=lambda t: None if "__pycache__" in t.name else t)
    buf.seek(0)
    return buf


def setup_and_deploy(c: Connection, app_dir: str) -> None:
    c.sudo("apt-get install -y -q nginx python3-venv", env={"DEBIAN_FRONTEND": "noninteractive"})
    if c.run("id hello", warn=True, hide=True).failed:
        c.sudo("useradd --system --home-dir /srv/hello --shell /usr/sbin/nologin hello")
    c.sudo("mkdir -p /srv/hello")
    c.put(app_tarball(app_dir), "/tmp/app.tar.gz")
    c.sudo("tar -xzf /tmp/app.tar.gz -C /srv/hello")
    c.sudo("python3 -m venv /srv/hello/venv")
    c.sudo("/srv/hello/venv/bin/pip install -q -r /srv/hello/app/requirements.txt")
    c.put(io.StringIO(UNIT), "/tmp/hello.service")
    c.sudo("mv /tmp/hello.service /etc/systemd/system/hello.service")
    c.put(io.StringIO(SITE), "/tmp/hello.conf")
    c.sudo("mv /tmp/hello.conf /etc/nginx/sites-available/hello")
    c.sudo("ln -sf /etc/nginx/sites-available/hello /etc/nginx/sites-enabled/hello")
    c.sudo("rm -f /etc/nginx/sites-enabled/default")
    c.sudo("systemctl daemon-reload")
    c.sudo("systemctl enable --now hello")
    c.sudo("systemctl reload nginx")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.handwritten", description=__doc__.split("\n")[0])
    ap.add_argument("-S", dest="ssh_config", required=True)
    ap.add_argument("host")
    ap.add_argument("app_dir")
    args = ap.parse_args(argv)
    config = Config(runtime_ssh_path=args.ssh_config)
    with Connection(args.host, config=config) as c:
        setup_and_deploy(c, args.app_dir)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
