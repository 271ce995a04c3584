"""The early exit of a successful run: output kept, exit codes of failed runs kept."""
import subprocess
import sys

import pytest



def run(body: str) -> subprocess.CompletedProcess:
    code = "import sys\nfrom deploy import fastexit\n" + body
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)


def test_success_exits_zero_with_all_output_flushed():
    p = run("fastexit.task_done(True)\nsys.stdout.write('partial line without newline')\n"
            "sys.stderr.write('err')\n")
    assert (p.returncode, p.stdout, p.stderr) == (0, "partial line without newline", "err")


@pytest.mark.parametrize("body, code", [
    ("fastexit.task_done(True)\nfastexit.task_done(False)\nsys.exit(1)", 1),
    ("fastexit.task_done(False)\nfastexit.task_done(True)\nsys.exit(130)", 130),
    ("fastexit.task_done(True)\nraise RuntimeError('bug')", 1),
    ("sys.exit(2)", 2),
])
def test_a_failed_run_keeps_its_exit_code(body, code):
    assert run(body).returncode == code


def test_a_traceback_is_still_printed():
    p = run("fastexit.task_done(True)\nraise RuntimeError('a bug')")
    assert "RuntimeError: a bug" in p.stderr
