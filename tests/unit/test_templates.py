"""systemd/, nginx/ and supervisor/ templates: the rendered lines that matter, exactly."""
from __future__ import annotations

import configparser
import importlib.util
import re

import jinja2
import pytest

from deploy import templates
from deploy.settings import PROJECT_ROOT

ALL = ["systemd/app.service.j2", "systemd/app.socket.j2", "nginx/site.conf.j2",
       "supervisor/app.conf.j2", "supervisor/tmpfiles.conf.j2"]

EXEC_START = ("ExecStart=/srv/flasksample/current/.venv/bin/gunicorn "
              "--chdir /srv/flasksample/current "
              "--config /srv/flasksample/current/.flasksample/gunicorn.conf.py "
              "--no-control-socket serve:app")


def lines(text: str) -> list[str]:
    return text.splitlines()


@pytest.mark.parametrize("template", ALL)
def test_every_template_renders_fully_and_says_it_is_managed(s, template):
    out = templates.render(template, s)
    assert "{{" not in out and "{%" not in out and "}}" not in out
    assert out.endswith("\n")
    assert templates.MANAGED in lines(out)[0]


def test_strict_undefined_refuses_a_missing_value(s):
    assert templates.environment().undefined is jinja2.StrictUndefined
    with pytest.raises(jinja2.UndefinedError):
        templates.environment().from_string("x {{ not_in_context }}").render(templates.context(s))
    with pytest.raises(jinja2.UndefinedError):
        templates.environment().from_string("{{ s.no_such_setting }}").render(templates.context(s))


def test_context_values(s):
    ctx = templates.context(s)
    assert ctx["socket_path"] == "/run/flasksample.sock"
    assert ctx["env_file"] == "/srv/flasksample/shared/env"
    assert (ctx["app"], ctx["user"], ctx["root"]) == ("flasksample", "flasksample", "/srv/flasksample")


# -- systemd service -------------------------------------------------------------------------

def test_service_core_lines(s):
    out = lines(templates.render("systemd/app.service.j2", s))
    for line in [
        "Requires=flasksample.socket",
        "After=network.target flasksample.socket",
        "Type=notify",
        "NotifyAccess=all",
        "User=flasksample",
        "Group=flasksample",
        "RuntimeDirectory=flasksample",
        "WorkingDirectory=/srv/flasksample/current",
        "EnvironmentFile=-/srv/flasksample/shared/env",
        EXEC_START,
        "ExecReload=/bin/kill -s HUP $MAINPID",
        "KillMode=mixed",
        "Restart=on-failure",
        "WantedBy=multi-user.target",
    ]:
        assert line in out, line


def test_service_chdir_names_the_current_symlink_not_a_release(s):
    exec_start = next(l for l in lines(templates.render("systemd/app.service.j2", s))
                      if l.startswith("ExecStart="))
    assert "--chdir /srv/flasksample/current " in exec_start
    assert "releases/" not in exec_start


def test_service_sandboxing(s):
    out = lines(templates.render("systemd/app.service.j2", s))
    for line in ["UMask=0027", "NoNewPrivileges=yes", "CapabilityBoundingSet=",
                 "AmbientCapabilities=", "PrivateTmp=yes", "PrivateDevices=yes",
                 "ProtectSystem=strict", "ProtectHome=yes", "ProtectKernelTunables=yes",
                 "ProtectKernelModules=yes", "ProtectControlGroups=yes", "ProtectProc=invisible",
                 "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6", "RestrictNamespaces=yes",
                 "RestrictSUIDSGID=yes", "LockPersonality=yes", "MemoryDenyWriteExecute=yes",
                 "SystemCallArchitectures=native", "SystemCallFilter=@system-service",
                 "SystemCallFilter=~@privileged @resources"]:
        assert line in out, line


def test_service_workers_flag_only_when_set(make):
    assert templates.render("systemd/app.service.j2", make(workers=0)).count("--workers") == 0
    out = lines(templates.render("systemd/app.service.j2", make(workers="3")))
    assert EXEC_START.replace(" serve:app", " --workers 3 serve:app") in out


def test_service_follows_app_name_base_dir_and_wsgi(make):
    out = lines(templates.render("systemd/app.service.j2",
                                 make(app_name="shop", base_dir="/opt/shop", wsgi="serve:app")))
    assert ("ExecStart=/opt/shop/current/.venv/bin/gunicorn --chdir /opt/shop/current "
            "--config /opt/shop/current/.flasksample/gunicorn.conf.py --no-control-socket "
            "serve:app") in out
    assert "EnvironmentFile=-/opt/shop/shared/env" in out
    assert "User=shop" in out and "Requires=shop.socket" in out


def test_socket_unit(s):
    out = lines(templates.render("systemd/app.socket.j2", s))
    for line in ["[Socket]", "ListenStream=/run/flasksample.sock", "SocketUser=www-data",
                 "SocketGroup=www-data", "SocketMode=0600", "WantedBy=sockets.target"]:
        assert line in out, line


def test_unit_files_parse_as_ini_sections(s):
    for template in ("systemd/app.service.j2", "systemd/app.socket.j2"):
        sections = [l for l in lines(templates.render(template, s)) if l.startswith("[")]
        assert sections in (["[Unit]", "[Service]", "[Install]"], ["[Unit]", "[Socket]", "[Install]"])


# -- nginx -----------------------------------------------------------------------------------

def nginx(settings) -> list[str]:
    return [l.strip() for l in lines(templates.render("nginx/site.conf.j2", settings))]


def test_nginx_site_lines(make):
    out = nginx(make(domains=["example.org", "www.example.org"]))
    for line in [
        "upstream flasksample_gunicorn {",
        "server unix:/run/flasksample.sock fail_timeout=0;",
        "listen 80;",
        "server_name example.org www.example.org;",
        "server_tokens off;",
        "client_max_body_size 10m;",
        "access_log /var/log/nginx/flasksample.access.log;",
        "location /static/ {",
        "alias /srv/flasksample/current/static/;",
        "proxy_pass http://flasksample_gunicorn;",
        "proxy_set_header Host $host;",
        "proxy_send_timeout 60s;",
        "proxy_read_timeout 60s;",
    ]:
        assert line in out, line


def test_nginx_follows_settings(make):
    out = nginx(make(domains="_", client_max_body_size="1g", proxy_timeout="5",
                     static_url="/assets/", static_dir="public"))
    assert "server_name _;" in out
    assert "client_max_body_size 1g;" in out
    assert "proxy_read_timeout 5s;" in out
    assert "location /assets/ {" in out
    assert "alias /srv/flasksample/current/public/;" in out


def _proxy_fix_of_the_app():
    spec = importlib.util.spec_from_file_location("_kit_serve_for_tests", PROJECT_ROOT / "app" / "serve.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.app.wsgi_app


def test_nginx_sets_exactly_the_forwarded_headers_the_app_trusts(s):
    sent = {m.group(1) for l in nginx(s)
            if (m := re.match(r"proxy_set_header (X-Forwarded-\w+) ", l))}
    fix = _proxy_fix_of_the_app()
    trusted = {f"X-Forwarded-{name.title()}" for name in ("for", "proto", "host", "port", "prefix")
               if getattr(fix, f"x_{name}")}
    assert sent == trusted == {"X-Forwarded-For", "X-Forwarded-Proto", "X-Forwarded-Host",
                               "X-Forwarded-Port"}
    # nginx is one hop: each header is trusted one level deep, and nginx appends to (not replaces) XFF.
    assert all(getattr(fix, f"x_{n}") == 1 for n in ("for", "proto", "host", "port"))
    assert "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;" in nginx(s)
    assert "proxy_set_header X-Forwarded-Proto $scheme;" in nginx(s)


def test_static_location_and_alias_agree_on_the_trailing_slash(make):
    from deploy.errors import KitError
    try:
        s = make(static_url="/assets")
    except KitError:
        return
    out = nginx(s)
    location = next(l for l in out if l.startswith("location /assets"))
    assert location == "location /assets/ {"


# -- supervisor ------------------------------------------------------------------------------

SUP_COMMAND = ("command=/usr/bin/python3 /srv/flasksample/current/.flasksample/keeper.py "
               "/run/flasksample/gunicorn.pid /bin/sh -c 'set -a; [ -r /srv/flasksample/shared/env ] && "
               ". /srv/flasksample/shared/env; set +a; exec /srv/flasksample/current/.venv/bin/gunicorn "
               "--chdir /srv/flasksample/current --config /srv/flasksample/current/.flasksample/gunicorn.conf.py "
               "--bind unix:/run/flasksample/gunicorn.sock --umask 0007 --no-control-socket \"serve:app\"'")


@pytest.fixture
def sup(make):
    return make(process_manager="supervisor")


def test_supervisor_socket_lives_in_a_runtime_dir_the_app_user_owns(sup):
    # gunicorn runs as the app user under supervisord: it cannot create a socket in /run itself.
    assert templates.context(sup)["socket_path"] == "/run/flasksample/gunicorn.sock"
    assert lines(templates.render("supervisor/tmpfiles.conf.j2", sup))[-1] == \
        "d /run/flasksample 0750 flasksample flasksample -"
    assert "server unix:/run/flasksample/gunicorn.sock fail_timeout=0;" in nginx(sup)


def test_supervisor_program(sup):
    out = lines(templates.render("supervisor/app.conf.j2", sup))
    for line in ["[program:flasksample]", SUP_COMMAND, "directory=/srv/flasksample",
                 "user=flasksample", "umask=027", "stopsignal=TERM", "stopasgroup=true",
                 "killasgroup=true", "stdout_logfile=/var/log/supervisor/flasksample.log"]:
        assert line in out, line


def test_supervisor_workers_flag_only_when_set(make):
    assert "--workers" not in templates.render("supervisor/app.conf.j2",
                                               make(process_manager="supervisor", workers=0))
    out = lines(templates.render("supervisor/app.conf.j2", make(process_manager="supervisor", workers=5)))
    assert SUP_COMMAND.replace(' "serve:app"', ' --workers 5 "serve:app"') in out


def test_supervisor_program_parses_like_supervisord_reads_it(sup):
    parser = configparser.RawConfigParser()
    parser.read_string(templates.render("supervisor/app.conf.j2", sup))
    assert parser.sections() == ["program:flasksample"]
    assert parser.get("program:flasksample", "command") == SUP_COMMAND.split("=", 1)[1]
    assert parser.get("program:flasksample", "user") == "flasksample"
