"""Renders the templates under systemd/, supervisor/ and nginx/ for a given Settings.

Templates are plain Jinja2 files that read like the config they become; this module only
supplies the values (StrictUndefined: a missing value is an error, never an empty string).
"""
from __future__ import annotations

import functools
import shlex
from pathlib import Path

from deploy import gunicorn, layout, tlsserver
from deploy.settings import Settings

# Installed (pip/pipx), the templates are package data under deploy/_templates/ (see
# pyproject.toml); in a checkout they sit at its top, next to deploy/.
HERE = Path(__file__).resolve().parent
SEARCH_PATH = [HERE / "_templates", HERE.parent]


@functools.cache
def environment():
    """The one Jinja2 environment, made at the first render: importing jinja2 costs ~25 ms,
    and setup reads the host's facts before it renders anything (deploy/tasks/setup.py)."""
    from jinja2 import Environment, FileSystemLoader, StrictUndefined

    env = Environment(
        loader=FileSystemLoader([str(p) for p in SEARCH_PATH if p.is_dir()]),
        undefined=StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(systemd_word=systemd_word, supervisor_word=supervisor_word,
                       shell_word=shlex.quote)
    return env


MANAGED = "Managed by flasksample (fab setup); local edits are overwritten."


def systemd_word(text: str) -> str:
    """One argument on an Exec line: double-quoted, with systemd's escapes ($$ and %% stop
    variable and specifier expansion)."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("$", "$$").replace("%", "%%")
    return f'"{escaped}"'


def supervisor_word(text: str) -> str:
    """One argument of a supervisor command= line: shell-quoted, with %% for its expansion."""
    return shlex.quote(text).replace("%", "%%")


def context(s: Settings) -> dict:
    """The values every template may use."""
    return {
        "s": s,
        "managed": MANAGED,
        "app": s.app_name,
        "user": s.app_user,
        "root": s.root,
        "wsgi": s.wsgi,
        "workers": s.workers,
        "domains": s.domains,
        "socket_path": layout.socket_path(s),
        "runtime_dir": layout.runtime_dir(s),
        "env_file": layout.env_file(s),
        "gunicorn_conf": layout.kit_file(layout.current_link(s), "gunicorn.conf.py"),
        # files: the pair goes up before the site; acme: callers say whether certbot has one yet
        "tls": tlsserver.nginx_tls(s, ready=s.tls == "files"),
        "keeper": layout.kit_file(layout.current_link(s), "keeper.py"),
        "master_pidfile": layout.master_pidfile(s),
        "nginx_logs": layout.nginx_logs(s),  # access, error
        "supervisor_log": layout.supervisor_log(s),  # the app's; each process: passes its own
        # the gunicorn command line: built once (deploy/gunicorn.py), for the unit and supervisor
        "gunicorn_exec": " ".join(gunicorn.unit_argv(s)),
        "supervisor_command": supervisor_word(gunicorn.with_env(s, gunicorn.supervisor_argv(s))),
    }


def render(template: str, s: Settings, **extra) -> str:
    """Render one template (path relative to the project, e.g. 'nginx/site.conf.j2'), with
    `extra` values for the templates that need more than the settings (the lb's hosts;
    tls=… once a certificate exists), or replacing context values (a unit checked before the
    venv exists)."""
    return environment().get_template(template).render({**context(s), **extra})
