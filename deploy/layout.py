"""Where things live on the server, derived from Settings: one place for every remote path.

    /srv/<app>/releases/<id>/      the code of one release (root-owned, read-only to the app)
    /srv/<app>/releases/<id>/.flasksample/   the kit's gunicorn config + the pinned requirements
    /srv/<app>/releases/<id>/.venv -> ../../venvs/<requirements hash>
    /srv/<app>/venvs/<hash>/       virtualenvs, shared by releases with the same requirements
    /srv/<app>/current -> releases/<id>
    /srv/<app>/previous -> releases/<id>   the release live before the last switch
    /srv/<app>/shared/env          the app's environment (secrets), root:<app> 0640
    /srv/<app>/.kit/               the kit's own state: deploy lock, deploy log, audit log
"""
from __future__ import annotations

from deploy.settings import Settings


def releases_dir(s: Settings) -> str:
    return f"{s.root}/releases"


def release_dir(s: Settings, release: str) -> str:
    return f"{s.root}/releases/{release}"


def venvs_dir(s: Settings) -> str:
    return f"{s.root}/venvs"


def venv_dir(s: Settings, req_hash: str) -> str:
    return f"{s.root}/venvs/{req_hash}"


# The kit's own files inside every release (the app's tree is left as it is).
KIT_IN_RELEASE = ".flasksample"


def kit_file(release_path: str, name: str) -> str:
    """e.g. kit_file(release, 'gunicorn.conf.py'), 'requirements.txt' (the pinned list)."""
    return f"{release_path}/{KIT_IN_RELEASE}/{name}"


def process_unit(s: Settings, name: str) -> str:
    """The systemd unit file of one of the app's processes: (e.g. shop-worker)."""
    return f"/etc/systemd/system/{s.app_name}-{name}.service"


def process_names(s: Settings) -> list[str]:
    """Unit / program names of the app's processes:, e.g. ['shop-worker']."""
    return [f"{s.app_name}-{name}" for name in s.processes]


def current_link(s: Settings) -> str:
    return f"{s.root}/current"


def previous_link(s: Settings) -> str:
    """The release that was live before the last switch: rollback's target, never pruned."""
    return f"{s.root}/previous"


def nginx_logs(s: Settings) -> list[str]:
    """The app's nginx access and error logs (nginx/site.conf.j2, lb.conf.j2; fab logs -w)."""
    return [f"/var/log/nginx/{s.app_name}.access.log", f"/var/log/nginx/{s.app_name}.error.log"]


def supervisor_log_dir(s: Settings) -> str:
    """Where supervisord's programs log (Debian's default): <program name>.log, see supervisor_log."""
    return "/var/log/supervisor"


def supervisor_log(s: Settings, name: str | None = None) -> str:
    """The log file of one of supervisord's programs: the app's (default), or e.g. shop-worker
    (supervisor/*.j2 write it; deploy/remote/supervisor.sh reads <dir>/<name>.log)."""
    return f"{supervisor_log_dir(s)}/{name or s.app_name}.log"


def shared_dir(s: Settings) -> str:
    return f"{s.root}/shared"


def env_file(s: Settings) -> str:
    return f"{s.root}/shared/env"


def kit_dir(s: Settings) -> str:
    return f"{s.root}/.kit"


def lock_dir(s: Settings) -> str:
    return f"{s.root}/.kit/lock"


def deploy_log(s: Settings) -> str:
    return f"{s.root}/.kit/deploys.log"


def audit_log(s: Settings) -> str:
    """Who changed what and when on this host (deploy/audit.py); root-only."""
    return f"{s.root}/.kit/audit.log"


def socket_path(s: Settings) -> str:
    """systemd's socket unit owns /run/<app>.sock; under supervisor gunicorn binds its own
    socket, in a runtime directory the app user may write."""
    if s.process_manager == "supervisor":
        return f"{runtime_dir(s)}/gunicorn.sock"
    return f"/run/{s.app_name}.sock"


def preflight_dir(s: Settings) -> str:
    """Where a new release boots alone before it takes traffic (its socket; the app's)."""
    return f"/run/{s.app_name}-preflight"


def runtime_dir(s: Settings) -> str:
    return f"/run/{s.app_name}"


def zygote_socket(s: Settings) -> str:
    """Where the running service's preflight zygote listens (deploy/kit/zygote.py)."""
    return f"{runtime_dir(s)}/zygote.sock"


def master_pidfile(s: Settings) -> str:
    """Under supervisor: the current gunicorn master's pid, kept by the keeper (deploy/kit/keeper.py)."""
    return f"{runtime_dir(s)}/gunicorn.pid"


def tmpfiles_conf(s: Settings) -> str:
    return f"/etc/tmpfiles.d/{s.app_name}-run.conf"


def unit_path(s: Settings, kind: str) -> str:
    """kind: 'service' or 'socket'."""
    return f"/etc/systemd/system/{s.app_name}.{kind}"


def nginx_site(s: Settings) -> str:
    return f"/etc/nginx/sites-available/{s.app_name}.conf"


def nginx_enabled(s: Settings) -> str:
    return f"/etc/nginx/sites-enabled/{s.app_name}.conf"


NGINX_DEFAULT_SITE = "/etc/nginx/sites-enabled/default"
NGINX_PID = "/run/nginx.pid"  # Debian's nginx.service


def supervisor_conf(s: Settings) -> str:
    return f"/etc/supervisor/conf.d/{s.app_name}.conf"
