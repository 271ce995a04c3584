"""deploy/audit.py (the audit entry a changing task appends) and setup --check's diff parts."""
from __future__ import annotations

import os

from deploy import audit, layout
from deploy.tasks.setup import audit_what, file_diff, read_files_script
from deploy.steps import Change


def test_an_entry_is_one_safe_line_appended_root_only(make, tmp_path, run_bash):
    s = make(base_dir=str(tmp_path / "app"))
    os.makedirs(layout.kit_dir(s))
    hostile = "env.set A'; rm -rf / #\n$(reboot)\tB"
    line = audit.append_line(s, "alice@laptop (pid 7)", hostile)
    run_bash(line, check=True)
    run_bash(audit.append_line(s, "bob@ci (pid 8)", "deployed 20261127-1"), check=True)
    log = tmp_path / "app/.kit/audit.log"
    entries = log.read_text().splitlines()
    assert len(entries) == 2
    when, who, what = entries[0].split("\t")
    assert when.endswith("Z") and who == "alice@laptop (pid 7)"
    assert what == "env.set A?? rm -rf / ???(reboot)?B"
    assert oct(log.stat().st_mode & 0o777) == "0o600"
    shown = run_bash(audit.show_script(s, 1)).stdout.splitlines()
    assert [audit.format_entry(l).split()[-1] for l in shown] == ["20261127-1"]


def test_no_entry_on_a_host_without_the_kit_dir(make, tmp_path, run_bash):
    s = make(base_dir=str(tmp_path / "none"))
    run_bash(audit.append_line(s, "a", "restart"), check=True)
    assert not (tmp_path / "none").exists()
    assert run_bash(audit.show_script(s, 5)).stdout.strip() == "::none"


def test_setup_entry_names_the_changed_steps():
    changes = [Change("packages", "install x", ["true"]), Change("user"), Change("nginx-site", "w", ["true"])]
    assert audit_what(changes) == "setup: packages, nginx-site"


def test_check_reads_files_and_diffs_them(tmp_path, run_bash):
    edited = tmp_path / "site.conf"
    edited.write_text("server {\n    client_max_body_size 99m;\n}\n")
    out = run_bash(read_files_script([str(edited), str(tmp_path / "missing")]), check=True).stdout
    path, data = out.strip().split("\t")
    assert path == str(edited)
    import base64

    old = base64.b64decode(data).decode()
    diff = file_diff(path, old, "server {\n    client_max_body_size 10m;\n}\n")
    assert f"--- {path} (on the host)\n" in diff
    assert "-    client_max_body_size 99m;\n" in diff and "+    client_max_body_size 10m;\n" in diff
    assert file_diff("/x", None, "new\n")[:2] == ["--- /dev/null\n", "+++ /x (setup would write)\n"]
