"""`fab logs --since` for logs that are plain files (nginx's, supervisor's gunicorn log):
the server's `date -d` turns the time into a date, and an awk program keeps the lines from
then on. It reads the three time stamps these files carry, in the server's local time:

    10.0.0.9 - - [27/Nov/2026:03:45:00 +0000] "GET / …"      nginx access log
    2026/11/27 03:45:00 [error] 123#123: …                    nginx error log
    [2026-11-27 03:45:00 +0000] [42] [INFO] Booting worker    gunicorn
A line without a time stamp (a traceback's) goes with the line before it.
"""
from __future__ import annotations

import re

from deploy.errors import KitError
from deploy.protocol import Exit
from deploy.shell import fail, q, script

SINCE_RE = re.compile(r"[A-Za-z0-9 :+.-]{1,40}")

AWK = r"""
function ep(y, mo, d, h, mi, se,   yy, era, yoe, doy, doe) {
  y += 0; mo += 0; d += 0; h += 0; mi += 0; se += 0  # substr() gives strings
  yy = y - (mo <= 2); era = int(yy / 400); yoe = yy - era * 400
  doy = int((153 * (mo > 2 ? mo - 3 : mo + 9) + 2) / 5) + d - 1
  doe = yoe * 365 + int(yoe / 4) - int(yoe / 100) + doy
  return ((era * 146097 + doe - 719468) * 86400) + h * 3600 + mi * 60 + se
}
BEGIN {
  split("Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec", names, " ")
  for (i = 1; i <= 12; i++) mon[names[i]] = i
  split(since, t, " "); from = ep(t[1], t[2], t[3], t[4], t[5], t[6]); keep = 0
}
{
  if (match($0, /[0-9][0-9]\/[A-Z][a-z][a-z]\/[0-9][0-9][0-9][0-9]:[0-9][0-9]:[0-9][0-9]:[0-9][0-9]/)) {
    s = substr($0, RSTART, RLENGTH)
    keep = ep(substr(s, 8, 4), mon[substr(s, 4, 3)], substr(s, 1, 2), substr(s, 13, 2), substr(s, 16, 2), substr(s, 19, 2)) >= from
  } else if (match($0, /[0-9][0-9][0-9][0-9][-\/][0-9][0-9][-\/][0-9][0-9] [0-9][0-9]:[0-9][0-9]:[0-9][0-9]/)) {
    s = substr($0, RSTART, RLENGTH)
    keep = ep(substr(s, 1, 4), substr(s, 6, 2), substr(s, 9, 2), substr(s, 12, 2), substr(s, 15, 2), substr(s, 18, 2)) >= from
  }
  if (keep) print
}
"""


def check_since(since: str | None) -> str | None:
    if since is not None and not SINCE_RE.fullmatch(since):
        raise KitError(f"--since {since!r} is not a time",
                       "write it like '10 min ago', '2026-11-27 03:00' or 'yesterday'")
    return since


def file_lines(files: list[str], follow: bool, lines: int, since: str | None) -> list[str]:
    """Shell lines printing the last `lines` lines of `files` (from `since`), then following."""
    names = " ".join(q(f) for f in files)
    if not since:
        return [f"tail -n {int(lines)}{' -F' if follow else ''} {names}"]
    return [
        f"from=$(date -d {q(since)} '+%Y %m %d %H %M %S') || "
        + fail(f"--since {since} is not a date the server understands", "write e.g. 10 min ago", Exit.USAGE),
        f"for f in {names}; do [ -r \"$f\" ] && awk -v since=\"$from\" {q(AWK)} \"$f\"; done | tail -n {int(lines)}",
        f"tail -n 0 -F {names}" if follow else "",
    ]


def nginx_logs_script(s, follow: bool, lines: int, since: str | None) -> str:
    files = [f"/var/log/nginx/{s.app_name}.access.log", f"/var/log/nginx/{s.app_name}.error.log"]
    return script(file_lines(files, follow, lines, since))


def supervisor_logs_script(s, follow: bool, lines: int, since: str | None) -> str:
    return script(file_lines([f"/var/log/supervisor/{s.app_name}.log"], follow, lines, since))
