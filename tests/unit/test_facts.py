"""deploy/facts.py: the probe script's lines, and a real round trip through local bash."""
from __future__ import annotations

import os

from deploy import facts
from deploy.facts import MISSING, Probe, parse, probe_script


def test_probe_keys_and_commands():
    assert facts.pkg("nginx").key == "pkg:nginx"
    assert facts.dir_("/srv/a b").command() == "stat -c '%U:%G:%a' '/srv/a b' 2>/dev/null || echo missing"
    assert facts.sha("/etc/x").command() == \
        "sha256sum /etc/x 2>/dev/null | cut -c1-64 | grep . || echo missing"
    assert facts.exists("/etc/x").command() == "test -e /etc/x && echo yes || echo no"
    assert facts.enabled("app.socket").command() == "systemctl is-enabled app.socket 2>/dev/null || true"


def test_probe_script_prints_one_tab_separated_line_per_probe_without_duplicates():
    text = probe_script([facts.link("/srv/app/current"), facts.user("app"),
                         facts.link("/srv/app/current")])
    assert text == (
        "printf '%s\\t%s\\n' link:/srv/app/current \"$(readlink /srv/app/current || echo missing | head -n1)\"\n"
        "printf '%s\\t%s\\n' user:app \"$({ IFS=: read -r kit_n _ _ _ _ kit_h kit_s < <(getent passwd app)"
        " && echo \"$kit_n:$kit_h:$kit_s\"; } || echo missing | head -n1)\"\n"
    )


def test_parse_keeps_tab_lines_and_strips_values():
    out = "pkg:nginx\tinstalled \nnoise without a tab\nuser:app\tapp:/srv/app:/usr/sbin/nologin\nempty:x\t\n"
    assert parse(out) == {"pkg:nginx": "installed", "user:app": "app:/srv/app:/usr/sbin/nologin",
                          "empty:x": ""}


def test_round_trip_through_local_bash(tmp_path, run_bash):
    f = tmp_path / "site.conf"
    f.write_text("hello\n")
    d = tmp_path / "dir with space"
    d.mkdir()
    os.chmod(d, 0o750)
    link = tmp_path / "current"
    link.symlink_to("releases/r1")
    me = run_bash("id -un").stdout.strip()
    group = run_bash("id -gn").stdout.strip()
    probes = [
        facts.sha(str(f)), facts.sha(str(tmp_path / "nope")),
        facts.dir_(str(d)), facts.dir_(str(tmp_path / "nope")),
        facts.link(str(link)), facts.link(str(f)),
        facts.exists(str(f)), facts.exists(str(tmp_path / "nope")),
        facts.pkg("no-such-package-kit-test"),
        facts.user("no-such-user-kit-test"),
        Probe("cmd", "bash"), Probe("cmd", "no-such-command-kit-test"),
    ]
    result = run_bash(probe_script(probes))
    assert result.returncode == 0, result.stderr
    got = parse(result.stdout)
    import hashlib
    assert got == {
        f"sha:{f}": hashlib.sha256(b"hello\n").hexdigest(),
        f"sha:{tmp_path}/nope": MISSING,
        f"dir:{d}": f"{me}:{group}:750",
        f"dir:{tmp_path}/nope": MISSING,
        f"link:{link}": "releases/r1",
        f"link:{f}": MISSING,
        f"exists:{f}": "yes",
        f"exists:{tmp_path}/nope": "no",
        "pkg:no-such-package-kit-test": MISSING,
        "user:no-such-user-kit-test": MISSING,
        "cmd:bash": run_bash("command -v bash").stdout.strip(),
        "cmd:no-such-command-kit-test": MISSING,
    }
    assert {line.split("\t")[0] for line in result.stdout.splitlines()} == {p.key for p in probes}


def test_probes_of_one_kind_are_asked_with_one_command():
    text = probe_script([facts.pkg("nginx"), facts.pkg("curl"), facts.sha("/a"), facts.sha("/b c"),
                         facts.enabled("nginx"), facts.enabled("app.socket"),
                         facts.active("nginx"), facts.active("app.socket")])
    assert text.count("dpkg-query") == text.count("sha256sum") == 1
    assert text.count("systemctl list-unit-files") == text.count("systemctl is-active") == 1
    assert "list-unit-files --no-legend --no-pager nginx.service app.socket" in text
    # an instance of a template unit has no unit file of its own: asked alone, as before
    assert facts.enabled("getty@tty1").command() in probe_script([facts.enabled("getty@tty1")])


def test_batches_answer_each_key_once_the_last_line_winning(tmp_path, run_bash):
    files = [tmp_path / name for name in ("a", "b c", "d")]
    for f in files[:2]:
        f.write_text(f.name)
    result = run_bash("set -euo pipefail\n" + probe_script(
        [facts.sha(str(f)) for f in files] + [facts.dir_(str(f)) for f in files]
        + [facts.exists(str(f)) for f in files]
        + [facts.active("no-such-unit-kit-test.service"), facts.active("no-such-unit-kit-2.socket")]
        + [facts.enabled("no-such-unit-kit-test")]))
    assert result.returncode == 0, result.stderr
    got = parse(result.stdout)
    import hashlib
    assert [got[f"sha:{f}"] for f in files] == [hashlib.sha256(f.name.encode()).hexdigest()
                                                for f in files[:2]] + [MISSING]
    assert got[f"dir:{files[2]}"] == MISSING and got[f"dir:{files[0]}"] != MISSING
    assert [got[f"exists:{f}"] for f in files] == ["yes", "yes", "no"]
    assert got["active:no-such-unit-kit-test.service"] in ("", "inactive", "unknown")
    assert got["active:no-such-unit-kit-2.socket"] in ("", "inactive", "unknown")
    assert got["enabled:no-such-unit-kit-test"] == ""


def test_round_trip_user_probe_reads_name_home_and_shell(run_bash):
    got = parse(run_bash(probe_script([facts.user("root")])).stdout)
    name, home, shell = got["user:root"].split(":")
    assert (name, home) == ("root", "/root") and shell.startswith("/")


def test_systemctl_probes_answer_an_empty_string_rather_than_failing(run_bash):
    # Whether or not systemd runs here, the probe never fails the script.
    result = run_bash("set -euo pipefail\n" + probe_script([facts.active("no-such-unit-kit-test.service")]))
    assert result.returncode == 0
    assert parse(result.stdout)["active:no-such-unit-kit-test.service"] in ("", "inactive", "unknown")


def test_round_trip_procunits_names_the_apps_process_units(tmp_path, run_bash):
    units = tmp_path / "system"
    units.mkdir()
    (units / "shop-worker.service").write_text("[Unit]\n# flasksample process worker of shop: x\n")
    (units / "shop-beat.service").write_text("[Unit]\n# flasksample process beat of shop: x\n")
    (units / "shop-hand.service").write_text("[Unit]\n# written by hand\n")
    script = probe_script([facts.procunits("shop")]).replace("/etc/systemd/system/", f"{units}/")
    got = parse(run_bash("set -euo pipefail\n" + script).stdout)
    assert sorted(got["procunits:shop"].split()) == ["shop-beat.service", "shop-worker.service"]
    (units / "shop-worker.service").unlink()
    (units / "shop-beat.service").unlink()
    assert parse(run_bash("set -euo pipefail\n" + script).stdout) == {"procunits:shop": ""}
