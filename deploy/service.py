"""Scripts for the day-to-day tasks: status, logs, restart (programs under deploy/remote/)."""
from __future__ import annotations

from deploy import layout, lock, release, tlsserver
from deploy.errors import KitError


def status_script(s) -> str:
    return release.run("status", s, functions={"tls_status": tlsserver.status_lines(s)})


def lines_count(number) -> int:
    """`fab logs -n N`: a positive whole number, or a one-line error."""
    try:
        n = int(str(number))
    except ValueError:
        n = 0
    if n <= 0:
        raise KitError(f"-n {number} is not a number of lines", "give a whole number, e.g. -n 100")
    return n


def logs_script(s, follow: bool, lines, since: str | None, nginx: bool,
                process: str | None = None) -> str:
    """The app's log, one of its processes:' (`process`), or nginx's (`nginx`)."""
    if process and process not in s.processes:
        raise KitError(f"there is no process {process!r} in processes:",
                       f"pick one of: {', '.join(s.processes) or '(none configured)'}")
    return release.run("logs", s, LINES=lines_count(lines), SINCE=since or "", FOLLOW=follow,
                       WEB=nginx, NGINX_LOGS=layout.nginx_log_dir(s),
                       PROCESS=f"{s.app_name}-{process}" if process else "")


def restart_script(s, who: lock.Holder | None = None) -> str:
    """Restart under the deploy lock, behind the health gate."""
    return release.run("restart", s, who or lock.holder())
