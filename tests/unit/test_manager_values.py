"""Every value the process managers' shell functions read reaches every program that loads them.

A value given only to one program (as MASTER_PIDFILE once was, to prepare) leaves a function
reading an unset name elsewhere: under `set -u` inside `$(…) || true` that is silently empty,
and supervisor's hand-over fell back to `supervisorctl restart` (a real outage, under load).
"""
import re
from pathlib import Path

import pytest

from deploy import release

REMOTE = Path(release.__file__).resolve().parent / "remote"
ASSIGNED = re.compile(r"^\s*(?:readonly\s+|local\s+|export\s+)?([A-Z_][A-Z0-9_]*)=", re.M)
READ = re.compile(r"\$\{?([A-Z_][A-Z0-9_]*)")


@pytest.mark.parametrize("manager", ["systemd", "supervisor"])
def test_manager_functions_read_only_common_values(make, manager):
    s = make(process_manager=manager)
    text = (REMOTE / f"{manager}.sh").read_text()
    lib = (REMOTE / "lib.sh").read_text()
    defined = set(ASSIGNED.findall(text + lib)) | {  # and every name of `readonly A=1 B=2 …` lines
        n.split("=")[0] for line in re.findall(r"readonly ([^\n]+)", lib) for n in line.split()}
    # PREFLIGHT_*: only the preflight functions read them, and only prepare calls those
    needed = {n for n in READ.findall(text) if not n.startswith("PREFLIGHT_")} - defined - {"KIT_TMP"}
    missing = needed - set(release.common_values(s))
    assert not missing, f"{manager}.sh reads {sorted(missing)}, which only some programs get"
