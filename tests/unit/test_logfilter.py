"""`fab logs --since` for plain log files: the awk filter over the three time stamp formats."""
import subprocess

import pytest

from deploy import logfilter
from deploy.errors import KitError

LOG = """\
10.0.0.9 - - [27/Nov/2026:03:45:00 +0000] "GET /old HTTP/1.1" 200
2026/11/27 03:44:59 [error] 12#12: old
[2026-11-27 03:40:00 +0000] [42] [INFO] old gunicorn
Traceback of the old line
10.0.0.9 - - [27/Nov/2026:03:46:00 +0000] "GET /new HTTP/1.1" 200
Traceback of the new line
2026/11/27 03:47:00 [error] 12#12: new
[2026-12-01 00:00:01 +0000] [42] [INFO] new gunicorn
"""


@pytest.mark.parametrize("awk", ["awk", "mawk"])
def test_keeps_lines_from_the_time_on_with_their_continuations(awk, tmp_path):
    try:
        subprocess.run([awk, "-W", "version"], capture_output=True)
    except FileNotFoundError:
        pytest.skip(f"{awk} not installed")
    log = tmp_path / "log"
    log.write_text(LOG)
    out = subprocess.run([awk, "-v", "since=2026 11 27 03 45 30", logfilter.AWK, str(log)],
                         capture_output=True, text=True, check=True).stdout
    assert [l for l in out.splitlines()] == [l for l in LOG.splitlines()[4:]]


def test_since_is_checked_before_any_connection():
    assert logfilter.check_since("10 min ago") == "10 min ago"
    assert logfilter.check_since(None) is None
    for bad in ("$(reboot)", "a'b", "x" * 41):
        with pytest.raises(KitError):
            logfilter.check_since(bad)


def test_file_logs_script_parses(s, syntax_ok):
    for since in (None, "10 min ago"):
        for follow in (False, True):
            assert syntax_ok(logfilter.nginx_logs_script(s, follow, 5, since)).returncode == 0
            assert syntax_ok(logfilter.supervisor_logs_script(s, follow, 5, since)).returncode == 0
