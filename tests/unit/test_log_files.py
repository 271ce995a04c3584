"""`fab logs --since` for plain log files (nginx's, supervisor's): lib.sh's `log_files`, whose
awk filter reads the three time stamp formats, and the --since check before any connection."""
import os
import shutil
import subprocess

import pytest

from deploy import service
from deploy.errors import KitError
from deploy.shell import q, remote_file, script

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


def log_files(tmp_path, awk, *args):
    """lib.sh's log_files on a copy of LOG, with `awk` first on PATH."""
    log = tmp_path / "app.log"
    log.write_text(LOG)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    if not (bin_dir / "awk").exists():
        (bin_dir / "awk").symlink_to(shutil.which(awk))
    text = script(remote_file("lib.sh"), "log_files " + " ".join(q(a) for a in args) + f" {q(str(log))}")
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    return subprocess.run(["bash", "-c", text], capture_output=True, text=True, env=env, timeout=10)


@pytest.mark.parametrize("awk", ["gawk", "mawk"])
def test_keeps_lines_from_the_time_on_with_their_continuations(awk, tmp_path):
    if shutil.which(awk) is None:
        pytest.skip(f"{awk} not installed")
    out = log_files(tmp_path, awk, "50", "2026-11-27 03:45:30", "")
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == LOG.splitlines()[4:]
    last = log_files(tmp_path, awk, "2", "2026-11-27 03:45:30", "")
    assert last.stdout.splitlines() == LOG.splitlines()[-2:]


def test_without_since_the_last_lines_and_a_bad_date_is_one_line(tmp_path):
    out = log_files(tmp_path, "awk", "3", "", "")
    assert out.stdout.splitlines() == LOG.splitlines()[-3:]
    bad = log_files(tmp_path, "awk", "3", "no such time", "")
    assert bad.returncode == 2
    assert bad.stdout == ("::error --since no such time is not a date the server understands — "
                          "write e.g. 10 min ago\n")


def test_since_is_checked_before_any_connection():
    assert service.check_since("10 min ago") == "10 min ago"
    assert service.check_since(None) is None
    for bad in ("$(reboot)", "a'b", "x" * 41):
        with pytest.raises(KitError):
            service.check_since(bad)
