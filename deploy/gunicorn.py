"""The gunicorn command line, built once: the systemd unit, the supervisor program and the
deploy's preflight boot all take it from here (change it here, nowhere else).

    gunicorn --chdir DIR --config DIR/.flasksample/gunicorn.conf.py [--bind …] [--umask …]
             [--control-socket … | --no-control-socket] [--workers N] WSGI
"""
from __future__ import annotations

from deploy import layout
from deploy.shell import q


def argv(s, app_dir: str, *, bind: str | None = None, umask: str | None = None,
         control_socket: str | None = None, workers: int | None = None) -> list[str]:
    """gunicorn's argv for the code in `app_dir` (`current`, or a release being checked)."""
    workers = s.workers if workers is None else workers
    args = [f"{app_dir}/.venv/bin/gunicorn", "--chdir", app_dir, "--config",
            layout.kit_file(app_dir, "gunicorn.conf.py")]
    if bind:
        args += ["--bind", bind]
    if umask:
        args += ["--umask", umask]
    args += ["--control-socket", control_socket] if control_socket else ["--no-control-socket"]
    if workers:
        args += ["--workers", str(workers)]
    return args + [s.wsgi]


def unit_argv(s) -> list[str]:
    """Under systemd: the socket comes from <app>.socket; --chdir names the `current` symlink,
    so a reload re-resolves it. No control socket: after a hand-over the old master's exit
    would unlink the new one's."""
    return argv(s, layout.current_link(s))


def supervisor_argv(s, app_dir: str | None = None, bind: str | None = None, workers: int | None = None):
    """Under supervisor gunicorn binds its socket itself, group-writable for nginx."""
    return argv(s, app_dir or layout.current_link(s), bind=f"unix:{bind or layout.socket_path(s)}",
                umask="0007", workers=workers)


def with_env(s, args: list[str]) -> str:
    """A `sh -c` program that exports the env file, then execs `args` (secrets never on a
    command line): what supervisord runs."""
    env = layout.env_file(s)
    # the WSGI target (last) in double quotes, for a factory call's parentheses (the setting's
    # allow-list has no quote, $ or backquote)
    return (f"set -a; [ -r {env} ] && . {env}; set +a; exec " + " ".join(q(a) for a in args[:-1])
            + f' "{args[-1]}"')
