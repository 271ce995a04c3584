"""Scripts for the day-to-day tasks: status, logs, restart (programs under deploy/remote/)."""
from __future__ import annotations

import re

from deploy import layout, lock, release, tlsserver
from deploy.errors import KitError

# fab logs --since: journalctl and the server's `date -d` (log files, lib.sh `log_files`) read it
SINCE_RE = re.compile(r"[A-Za-z0-9 :+.-]{1,40}")


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


def check_since(since: str | None) -> str | None:
    """`fab logs --since`: a time as journalctl and `date -d` write it, or a one-line error."""
    if since is not None and not SINCE_RE.fullmatch(since):
        raise KitError(f"--since {since!r} is not a time",
                       "write it like '10 min ago', '2026-11-27 03:00' or 'yesterday'")
    return since


def logs_script(s, follow: bool, lines, since: str | None, nginx: bool,
                process: str | None = None) -> str:
    """The app's log, one of its processes:' (`process`), or nginx's (`nginx`); from `since`
    on when given (the journal, or the time stamps of the plain log files)."""
    if process and process not in s.processes:
        raise KitError(f"there is no process {process!r} in processes:",
                       f"pick one of: {', '.join(s.processes) or '(none configured)'}")
    return release.run("logs", s, LINES=lines_count(lines), SINCE=since or "", FOLLOW=follow,
                       WEB=nginx, NGINX_LOGS=layout.nginx_logs(s),
                       PROCESS=f"{s.app_name}-{process}" if process else "")


def restart_script(s, who: lock.Holder | None = None) -> str:
    """Restart under the deploy lock, behind the health gate."""
    return release.run("restart", s, who or lock.holder())
