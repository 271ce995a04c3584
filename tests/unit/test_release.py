"""deploy/release.py (+ shell, lock, health): the exact shell that matters, `bash -n` on every
generated script, and the switch/cleanup/rollback/lock logic run for real in a temp directory
with systemctl/curl/journalctl replaced by bash functions (no root, no network)."""
from __future__ import annotations

import dataclasses
import os
import re

import pytest

from deploy import health, lock, release
from deploy.managers import systemd
from deploy.facts import probe_script
from deploy.shell import HEADER, fail, flatten, q, script, step, write_file

R1, R2, R3 = "20261126-230000.000-aaaaaaa", "20261126-231000.000-bbbbbbb", "20261126-232000.000-ccccccc"


@pytest.fixture
def srv(tmp_path, make):
    """Settings whose base_dir is a temp directory, and a helper to lay releases out in it."""
    root = tmp_path / "srv"
    (root / "releases").mkdir(parents=True)
    (root / "venvs").mkdir()
    (root / ".kit").mkdir()
    s = make(base_dir=str(root), health_timeout=1)

    def add(rel, venv="h1"):
        d = root / "releases" / rel
        d.mkdir()
        (d / "REVISION").write_text(rel + "\n")
        (root / "venvs" / venv).mkdir(exist_ok=True)
        (d / ".venv").symlink_to(f"../../venvs/{venv}")
        return d

    def point(rel):
        link = root / "current"
        if link.is_symlink():
            link.unlink()
        link.symlink_to(f"releases/{rel}")

    return s, root, add, point


# Bash functions standing in for the server's tools. Calls are appended to $KIT_CALLS; the fake
# nginx answers with the release `current` points to, or with $KIT_STALE when set; `date +%s%N`
# advances 0.1 s per call so a failing health gate gives up at once.
STUBS = r"""
systemctl() { echo "systemctl $*" >> "$KIT_CALLS"; if [ "$1" = is-active ]; then return "${KIT_INACTIVE:-0}"; fi; }
supervisorctl() { echo "supervisorctl $*" >> "$KIT_CALLS"; if [ "$1" = status ]; then echo "app RUNNING"; fi; }
journalctl() { echo "journalctl $*" >> "$KIT_CALLS"; echo "app log line"; }
curl() {
  echo "curl $*" >> "$KIT_CALLS"
  local rel; rel=${KIT_STALE:-$(cat "$KIT_ROOT/current/REVISION")}
  printf 'HTTP/1.1 %s OK\r\nX-Flasksample-Release: %s\r\n\r\nkit-status %s\n' "${KIT_STATUS:-200}" "$rel" "${KIT_STATUS:-200}"
}
sleep() { :; }
date() {
  if [ "$1" = "+%s%N" ]; then
    local n; n=$(( $(cat "$KIT_CLOCK") + 100000000 )); echo "$n" > "$KIT_CLOCK"; echo "$n"
  else command date "$@"; fi
}
"""


CURL = "curl -s -m 2 -o /dev/null -D - -w kit-status %{http_code}\\n "


def run_stubbed(run_bash, root, text, **env):
    calls, clock = root.parent / "calls", root.parent / "clock"
    calls.write_text("")
    clock.write_text("1000000000000000000")
    exports = "".join(f"export {k}={q(str(v))}\n" for k, v in
                      dict(KIT_CALLS=calls, KIT_CLOCK=clock, KIT_ROOT=root, **env).items())
    result = run_bash(exports + STUBS + text)
    return result, calls.read_text().splitlines()


# -- shell.py --------------------------------------------------------------------------------

def test_script_header_and_flatten():
    assert flatten(["a", ["b", ["", "c"]], "", "d"]) == ["a", "b", "c", "d"]
    assert script("a", ["b"]) == HEADER + "a\nb\n"
    assert HEADER.startswith("set -euo pipefail\n")


def test_step_and_fail_lines():
    assert step("venv") == 'echo "::step venv $(date +%s.%N)"'
    assert fail("it's broken", 3) == "{ echo '::error it'\"'\"'s broken'; exit 3; }"


def test_write_file_is_atomic_and_round_trips_any_content(tmp_path, run_bash):
    target = tmp_path / "dir with space" / "f.conf"
    target.parent.mkdir()
    content = "line 'one'\n$HOME `x` \\ \"q\"\nünïcode\n"
    owner = f"{os.getuid()}:{os.getgid()}"
    line = write_file(str(target), content, "0640", owner)
    assert line.startswith("printf %s ") and line.endswith(f"mv -f {q(str(target) + '.kit-new')} {q(str(target))}")
    result = run_bash(line)
    assert result.returncode == 0, result.stderr
    assert target.read_text() == content
    assert oct(target.stat().st_mode & 0o777) == "0o640"
    assert not (tmp_path / "dir with space" / "f.conf.kit-new").exists()


# -- lock.py ---------------------------------------------------------------------------------

def test_lock_acquire_lines_exact(s):
    assert lock.acquire(s, "me@box (pid 1)", R1) == [
        "install -d -m 700 /srv/flasksample/.kit",
        "if ! mkdir /srv/flasksample/.kit/lock 2>/dev/null; then echo \"::error deploy locked by "
        "$(cat /srv/flasksample/.kit/lock/holder 2>/dev/null || echo unknown) since "
        "$(cat /srv/flasksample/.kit/lock/since 2>/dev/null || echo unknown) — wait for it, or if it "
        "died run again with --force\"; exit 75; fi",
        f"printf '%s\\n' 'me@box (pid 1), release {R1}' > /srv/flasksample/.kit/lock/holder",
        "date -u +%Y-%m-%dT%H:%M:%SZ > /srv/flasksample/.kit/lock/since",
    ]
    assert lock.release_line(s) == "rm -rf /srv/flasksample/.kit/lock"


def test_lock_force_breaks_the_old_lock_first(s):
    lines = lock.acquire(s, "me", R1, force=True)
    assert lines[1] == (
        "if [ -d /srv/flasksample/.kit/lock ]; then echo \"broke the lock held by "
        "$(cat /srv/flasksample/.kit/lock/holder 2>/dev/null) since "
        "$(cat /srv/flasksample/.kit/lock/since 2>/dev/null)\"; rm -rf /srv/flasksample/.kit/lock; fi")
    assert lines[2].startswith("if ! mkdir /srv/flasksample/.kit/lock")


def test_lock_second_deploy_is_refused_naming_the_holder_and_force_breaks_it(srv, run_bash):
    s, root, _, _ = srv
    first = run_bash(script(lock.acquire(s, "alice@a", R1)))
    assert first.returncode == 0, first.stderr
    assert (root / ".kit/lock/holder").read_text() == f"alice@a, release {R1}\n"
    second = run_bash(script(lock.acquire(s, "bob@b", R2)))
    assert second.returncode == lock.LOCKED_EXIT
    assert re.fullmatch(rf"::error deploy locked by alice@a, release {R1} since \d{{4}}-\d\d-\d\dT\S+Z — "
                        r"wait for it, or if it died run again with --force\n", second.stdout)
    status = run_bash(script(lock.status_line(s))).stdout
    assert status.startswith(f"locked by alice@a, release {R1} since ")
    forced = run_bash(script(lock.acquire(s, "bob@b", R2, force=True)))
    assert forced.returncode == 0
    assert forced.stdout.startswith(f"broke the lock held by alice@a, release {R1} since ")
    assert (root / ".kit/lock/holder").read_text() == f"bob@b, release {R2}\n"
    run_bash(script(lock.release_line(s)), check=True)
    assert run_bash(script(lock.status_line(s))).stdout == "unlocked\n"


# -- health.py -------------------------------------------------------------------------------

@pytest.mark.parametrize("domains, header", [(["_"], "localhost"), (["*.a.org", "b.org"], "b.org"),
                                             (["a.org", "b.org"], "a.org")])
def test_health_host_header(make, domains, header):
    assert health.host_header(make(domains=domains)) == header


def test_health_curl_arguments(s):
    assert health.through_nginx(s) == "-H 'Host: localhost' http://127.0.0.1/"
    assert health.on_socket(s, "/run/x/g.sock") == "--unix-socket /run/x/g.sock http://localhost/"


def test_kit_healthy_needs_the_wanted_release_and_gives_up_after_the_timeout(srv, run_bash):
    s, root, add, point = srv
    add(R1)
    point(R1)
    fn = health.wait_function(s) + "\n"
    ok, calls = run_stubbed(run_bash, root, fn + f"kit_healthy {R1} 5 {health.through_nginx(s)}")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert calls == [CURL + "-H Host: localhost http://127.0.0.1/"] * 3
    bad, _ = run_stubbed(run_bash, root, fn + f"kit_healthy {R2} 1 {health.through_nginx(s)}")
    assert bad.returncode == 1
    assert bad.stdout == f'last health answer: HTTP 200, release {R1}\n'
    anyrel, _ = run_stubbed(run_bash, root, fn + f"kit_healthy '' 1 {health.through_nginx(s)}")
    assert anyrel.returncode == 0


@pytest.mark.parametrize("health_path,status,ok", [
    ("", 200, True), ("", 302, True), ("", 404, True), ("", 500, False), ("", 503, False),
    ("/up", 200, True), ("/up", 204, True), ("/up", 302, False), ("/up", 404, False)])
def test_kit_healthy_judges_the_status_by_whether_the_app_has_a_health_path(
        srv, make, run_bash, health_path, status, ok):
    _, root, add, point = srv
    add(R1)
    point(R1)
    s = make(base_dir=str(root), health_path=health_path)
    fn = health.wait_function(s) + "\n"
    out, _ = run_stubbed(run_bash, root, fn + f"kit_healthy {R1} 1 {health.through_nginx(s)}",
                         KIT_STATUS=status)
    assert (out.returncode == 0) == ok, out.stdout


def test_health_path_reaches_curl_verbatim(srv, make, run_bash):
    _, root, add, point = srv
    add(R1)
    point(R1)
    s = make(base_dir=str(root), health_path="/healthz?deep=1&x=2")
    fn = health.wait_function(s) + "\n"
    _, calls = run_stubbed(run_bash, root, fn + f"kit_healthy {R1} 5 {health.through_nginx(s)}")
    assert calls and calls[0] == CURL + "-H Host: localhost http://127.0.0.1/healthz?deep=1&x=2"


# -- prepare ---------------------------------------------------------------------------------




def test_venv_lines_exact(s):
    assert release.venv_lines(s, "abc123", f"/srv/flasksample/releases/{R1}") == [
        "if [ ! -e /srv/flasksample/venvs/abc123/.complete ]; then",
        "  echo 'building venv abc123 (requirements changed)'",
        "  rm -rf /srv/flasksample/venvs/abc123 && python3 -m venv /srv/flasksample/venvs/abc123",
        "  /srv/flasksample/venvs/abc123/bin/pip install -q --disable-pip-version-check --no-input "
        f"-r /srv/flasksample/releases/{R1}/.flasksample/requirements.txt >/run/flasksample-kit/pip.log 2>&1 || "
        "{ tail -n 5 /run/flasksample-kit/pip.log; rm -rf /srv/flasksample/venvs/abc123; "
        "echo '::error pip install of the pinned requirements failed (its log is above)'; exit 1; }",
        "  touch /srv/flasksample/venvs/abc123/.complete",
        "fi",
        f"ln -sfn ../../venvs/abc123 /srv/flasksample/releases/{R1}/.venv",
    ]


def test_venv_is_reused_when_complete_and_rebuilt_when_not(srv, run_bash):
    s, root, _, _ = srv
    rel = root / "releases" / R1
    rel.mkdir()
    (root / "venvs" / "h1").mkdir()
    (root / "venvs" / "h1" / ".complete").touch()
    stub = 'python3() { echo "python3 $*" >> "$KIT_CALLS"; mkdir -p "$3/bin"; ' \
           'printf "#!/bin/sh\\n" > "$3/bin/pip"; chmod +x "$3/bin/pip"; }\n'
    reuse, calls = run_stubbed(run_bash, root, stub + script(release.venv_lines(s, "h1", str(rel))))
    assert reuse.returncode == 0 and calls == [] and "building" not in reuse.stdout
    assert os.readlink(rel / ".venv") == "../../venvs/h1"
    assert (rel / ".venv").resolve() == (root / "venvs" / "h1").resolve()
    build, calls = run_stubbed(run_bash, root, stub + script(release.venv_lines(s, "h2", str(rel))))
    assert build.returncode == 0, build.stderr
    assert build.stdout == "building venv h2 (requirements changed)\n"
    assert calls == [f"python3 -m venv {root}/venvs/h2"]
    assert (root / "venvs" / "h2" / ".complete").exists()
    assert os.readlink(rel / ".venv") == "../../venvs/h2"


def test_prepare_script_order_and_key_lines(s):
    text = release.prepare_script(s, R1, "h1", "me", force=False)
    steps = re.findall(r"::step (\w+)", text)
    assert steps == ["lock", "unpack", "venv", "preflight"]
    rel = f"/srv/flasksample/releases/{R1}"
    lines = text.splitlines()
    assert (f"trap 'rc=$?; rm -f \"$kit_archive\"; [ $rc -eq 0 ] || {{ rm -rf {rel} {rel}.partial "
            "/run/flasksample-preflight; rm -rf /srv/flasksample/.kit/lock; }' EXIT") in lines
    # stdin (the archive) is read in full before anything can refuse
    assert text.index('base64 -d > "$kit_archive"') < text.index("mkdir /srv/flasksample/.kit/lock")
    assert f'tar -xzf "$kit_archive" -C {rel}.partial --no-same-owner && rm -f "$kit_archive"' in lines
    assert f"echo {R1} > {rel}.partial/REVISION" in lines
    assert f"chmod -R u=rwX,go=rX {rel}.partial && mv -T {rel}.partial {rel}" in lines
    # the lock is taken before the undo trap is armed: a refused deploy never removes the holder's lock
    assert text.index("mkdir /srv/flasksample/.kit/lock") < text.index("trap 'rc=$?")
    assert "broke the lock" not in text
    assert "broke the lock" in release.prepare_script(s, R1, "h1", "me", force=True)


def test_preflight_boots_the_release_alone_as_the_app_user(s):
    rel = f"/srv/flasksample/releases/{R1}"
    lines = release.preflight_lines(s, rel)
    assert lines[0] == ("rm -rf /run/flasksample-preflight && install -d -o flasksample -g flasksample "
                        "-m 700 /run/flasksample-preflight")
    assert lines[1].startswith("(cd / && exec setsid runuser -u flasksample -- sh -c ")
    assert (f"exec {rel}/.venv/bin/gunicorn --chdir {rel} --config {rel}/.flasksample/gunicorn.conf.py "
            "--bind unix:/run/flasksample-preflight/gunicorn.sock --workers 1 --no-control-socket serve:app") in lines[1]
    assert lines[3] == ("if ! KIT_WATCH_PID=$pf_pid kit_healthy '' 20 --unix-socket /run/flasksample-preflight/gunicorn.sock "
                        "http://localhost/; then")
    assert any(l.strip().endswith(f"exit {release.PREFLIGHT_EXIT}") for l in lines)


# -- switch ----------------------------------------------------------------------------------

def test_current_is_switched_by_renaming_a_symlink(s):
    assert release.point_current(s, R2) == (
        f"ln -sfn releases/{R2} /srv/flasksample/current.kit-new && "
        "mv -T /srv/flasksample/current.kit-new /srv/flasksample/current")


def test_point_current_runs(srv, run_bash):
    s, root, add, point = srv
    add(R1), add(R2)
    point(R1)
    run_bash(script(release.point_current(s, R2)), check=True)
    assert os.readlink(root / "current") == f"releases/{R2}"
    assert not os.path.lexists(root / "current.kit-new")
    assert (root / "current" / "REVISION").read_text() == R2 + "\n"


def test_activate_lines_systemd(s):
    assert release.activate_lines(s) == [
        "{ if ! systemctl is-active -q flasksample.service; then systemctl start flasksample.service;",
        "elif [ \"$(readlink -f /srv/flasksample/current/.venv)\" != \"$old_venv\" ]; then "
        "kit_handover;",
        "else systemctl reload flasksample.service; fi; } "
        "|| echo 'warning: systemd reported an error; the health check decides'",
    ]


def test_activate_lines_supervisor(make):
    assert release.activate_lines(make(process_manager="supervisor")) == [
        "{ if ! supervisorctl status flasksample 2>/dev/null | grep -qE 'RUNNING|STARTING'; then "
        "supervisorctl start flasksample >/dev/null;",
        "elif [ \"$(readlink -f /srv/flasksample/current/.venv)\" != \"$old_venv\" ]; then "
        "kit_handover;",
        "else supervisorctl signal HUP flasksample >/dev/null; fi; } "
        "|| echo 'warning: supervisor reported an error; the health check decides'",
    ]


@pytest.mark.parametrize("new_venv, inactive, expected", [
    ("h1", 0, "systemctl reload flasksample.service"),      # same requirements: graceful reload
    ("h2", 0, "kit_handover"),                              # the venv changed: new master
    ("h1", 1, "systemctl start flasksample.service"),       # not running: start
])
def test_reload_unless_the_venv_changed(srv, run_bash, new_venv, inactive, expected):
    s, root, add, point = srv
    add(R1, "h1"), add(R2, new_venv)
    point(R1)
    text = script('kit_handover() { echo kit_handover >> "$KIT_CALLS"; }',
                  f"old_venv=$(readlink -f {root}/current/.venv)", release.point_current(s, R2),
                  release.activate_lines(s))
    result, calls = run_stubbed(run_bash, root, text, KIT_INACTIVE=inactive)
    assert result.returncode == 0, result.stderr
    assert calls == ["systemctl is-active -q flasksample.service", expected]


HANDOVER_STUBS = r"""
systemctl() {
  echo "systemctl $*" >> "$KIT_CALLS"
  if [ "$1 $2" = "show -p" ]; then  # MainPID: the old master until the new one is ready
    local n; n=$(( $(cat "$KIT_SHOWN") + 1 )); echo "$n" > "$KIT_SHOWN"
    if [ "$n" -gt "$KIT_READY_AFTER" ]; then echo 200; else echo "$KIT_OLD"; fi
  fi
}
kill() { echo "kill $*" >> "$KIT_CALLS"; }
pgrep() { echo 201; }
"""


@pytest.mark.parametrize("old, ready_after, rc, tail", [
    ("100", 3, 0, ["kill -TERM 100"]),                  # USR2, MainPID becomes 200, TERM the old
    ("0", 1, 0, ["systemctl restart flasksample.service"]),  # nothing runs: a plain restart
    ("100", 10**9, 1, []),                               # never ready: the old master serves on
])
def test_systemd_handover(srv, run_bash, tmp_path, old, ready_after, rc, tail):
    s, root, *_ = srv
    shown = tmp_path / "shown"
    shown.write_text("0")
    text = script(systemd.handover_function(dataclasses.replace(s, health_timeout=4)), "kit_handover")
    result, calls = run_stubbed(run_bash, root, HANDOVER_STUBS + text, KIT_OLD=old,
                                KIT_READY_AFTER=ready_after, KIT_SHOWN=shown)
    assert result.returncode == rc, result.stderr
    assert calls[0] == "systemctl show -p MainPID --value flasksample.service"
    if old != "0":
        assert calls[1] == "kill -USR2 100"
        assert not any(c.startswith("kill -TERM") for c in calls[:-1])
    assert calls[-len(tail):] == tail if tail else "kill -TERM 100" not in calls
    if rc:
        assert "was not ready within 4 s" in result.stdout and "the old one still serves" in result.stdout
        assert calls.count("kill -USR2 100") > 1  # repeated while a handed-over master is not promoted


def test_switch_script_shape(s):
    text = release.switch_script(s, R2, "me")
    lines = text.splitlines()
    assert lines[:7] == HEADER.splitlines() + ["trap '' HUP INT PIPE", "kit_log=$(mktemp)", "set +e"]
    assert lines[-2:] == [') > "$kit_log" 2>&1; rc=$?', 'cat "$kit_log"; rm -f "$kit_log"; exit $rc']
    assert re.findall(r"::step (\w+)", text) == ["switch", "health", "finish"]
    assert f"if ! kit_healthy {R2} 20 {health.through_nginx(s)} || ! kit_processes_up; then" in lines
    assert "    " + release.point_current(s, '"$prev"') in lines
    assert (f"  echo \"::error release {R2} failed its health check through nginx; ${{prev:-no previous "
            "release} serves again — correct the app (its log is above) and deploy again\"; exit 4") in lines
    assert "  journalctl -u flasksample.service --no-pager -o short-iso -n 20 2>&1 | tail -n 20" in lines
    assert 'echo "::previous $prev"' in lines
    assert "mkdir /srv/flasksample/.kit/lock" not in text
    assert "mkdir /srv/flasksample/.kit/lock" in release.switch_script(s, R2, "me", lock_first=True)


def test_switch_runs_health_gates_and_finishes(srv, run_bash):
    s, root, add, point = srv
    add(R1), add(R2)
    point(R1)
    (root / ".kit" / "lock").mkdir()  # held by this deploy since prepare
    result, calls = run_stubbed(run_bash, root, release.switch_script(s, R2, "me@box"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert os.readlink(root / "current") == f"releases/{R2}"
    assert f"::previous {R1}" in result.stdout.splitlines()
    assert calls[:2] == ["systemctl is-active -q flasksample.service",
                         "systemctl reload flasksample.service"]
    assert sum(c.startswith("curl ") for c in calls) == 3
    assert re.fullmatch(rf"\S+Z deployed {R2} by me@box\n", (root / ".kit/deploys.log").read_text())
    assert not (root / ".kit" / "lock").exists()


def test_failed_health_gate_points_current_back_and_reports(srv, run_bash):
    s, root, add, point = srv
    add(R1), add(R2)
    point(R1)
    (root / ".kit" / "lock").mkdir()
    result, calls = run_stubbed(run_bash, root, release.switch_script(s, R2, "me"), KIT_STALE="nope")
    assert result.returncode == release.UNHEALTHY_EXIT
    out = result.stdout.splitlines()
    assert out[-1] == (f"::error release {R2} failed its health check through nginx; {R1} serves again"
                       " — correct the app (its log is above) and deploy again")
    assert f"--- release {R2} failed its health check through nginx; the app log says:" in out
    assert "app log line" in out and f"rolled back to {R1}" in out
    assert os.readlink(root / "current") == f"releases/{R1}"
    assert calls.count("systemctl reload flasksample.service") == 2
    assert not (root / ".kit" / "lock").exists()
    assert not (root / ".kit" / "deploys.log").exists()


def test_switch_to_a_missing_release_refuses(srv, run_bash):
    s, root, add, point = srv
    add(R1)
    point(R1)
    result, calls = run_stubbed(run_bash, root, release.switch_script(s, R3, "me", lock_first=True))
    assert result.returncode == 2
    assert result.stdout.splitlines()[-1] == \
        f"::error release {R3} does not exist on this host — pick one from fab releases"
    assert os.readlink(root / "current") == f"releases/{R1}" and calls == []
    assert not (root / ".kit" / "lock").exists()


def test_rollback_switch_refuses_while_another_deploy_holds_the_lock(srv, run_bash):
    s, root, add, point = srv
    add(R1), add(R2)
    point(R2)
    run_bash(script(lock.acquire(s, "alice", R3)), check=True)
    result, _ = run_stubbed(run_bash, root, release.switch_script(s, R1, "bob", verb="rolled back to",
                                                                  lock_first=True))
    assert result.returncode == lock.LOCKED_EXIT
    assert os.readlink(root / "current") == f"releases/{R2}"


def test_abort_removes_the_prepared_release_only_under_its_own_lock(srv, run_bash):
    s, root, add, point = srv
    add(R1), add(R2)
    (root / "releases" / (R2 + ".partial")).mkdir()
    point(R1)
    run_bash(script(lock.acquire(s, "alice@a (pid 7)", R3)), check=True)
    run_bash(release.abort_script(s, R2, "bob@b (pid 9)"), check=True)
    assert (root / "releases" / R2).exists() and (root / ".kit" / "lock").exists()
    run_bash(release.abort_script(s, R2, "alice@a (pid 7)"), check=True)
    assert sorted(p.name for p in (root / "releases").iterdir()) == [R1]
    assert not (root / ".kit" / "lock").exists()


# -- cleanup and rollback target -------------------------------------------------------------

RELS = [f"20261126-23{m:02d}00.000-{m:07x}" for m in range(8)]  # oldest first


def cleanup(run_bash, s):
    result = run_bash(script(release.cleanup_lines(s)))
    assert result.returncode == 0, result.stderr
    return sorted(p.name for p in (s_root(s) / "releases").iterdir())


def s_root(s):
    from pathlib import Path
    return Path(s.root)


def test_cleanup_keeps_the_newest_keep_releases(srv, run_bash):
    s, root, add, point = srv
    for i, r in enumerate(RELS):
        add(r, venv="old" if i < 3 else "new")
    point(RELS[-1])
    assert cleanup(run_bash, s) == RELS[-5:]  # keep_releases defaults to 5
    assert sorted(p.name for p in (root / "venvs").iterdir()) == ["new"]


def test_cleanup_never_removes_current_or_the_one_before_it(srv, run_bash, make):
    _, root, add, point = srv
    s = make(base_dir=str(root), keep_releases=2)
    for i, r in enumerate(RELS):
        add(r, venv=f"v{i}")
    point(RELS[3])  # after a rollback
    assert cleanup(run_bash, s) == [RELS[2], RELS[3], RELS[6], RELS[7]]
    assert sorted(p.name for p in (root / "venvs").iterdir()) == ["v2", "v3", "v6", "v7"]


def test_cleanup_count_follows_keep_releases(s, make):
    assert "tail -n +6;" in " ".join(release.cleanup_lines(s)).replace(")", ";")
    assert "| tail -n +10)" in " ".join(release.cleanup_lines(make(keep_releases=9)))


def test_rollback_target_is_the_release_before_current(srv, run_bash):
    s, root, add, point = srv
    for r in (R1, R2, R3):
        add(r)
    (root / "releases" / (R3 + "x.partial")).mkdir()
    point(R3)
    result = run_bash(script(release.rollback_target_lines(s, None)))
    assert (result.returncode, result.stdout) == (0, R2 + "\n")
    point(R1)
    result = run_bash(script(release.rollback_target_lines(s, None)))
    assert result.returncode == 2
    assert result.stdout == "::error there is no release before the current one to roll back to — deploy one first, or name one with --to\n"


def test_rollback_to_a_named_release(srv, run_bash):
    s, root, add, point = srv
    add(R1), add(R2)
    point(R2)
    result = run_bash(script(release.rollback_target_lines(s, R1)))
    assert (result.returncode, result.stdout) == (0, R1 + "\n")
    missing = run_bash(script(release.rollback_target_lines(s, "nope")))
    assert missing.stdout == "::error no release nope on this host — pick one from fab releases\n"


def test_list_script_marks_current(srv, run_bash):
    s, root, add, point = srv
    add(R1), add(R2)
    point(R1)
    result = run_bash(release.list_script(s))
    assert result.stdout == f"* {R1} (current)\n  {R2}\n-- last deploys:\n"


# -- every generated script parses -----------------------------------------------------------

def generated_scripts(make):
    from deploy import facts
    out = {}
    for manager in ("systemd", "supervisor"):
        s = make(process_manager=manager, domains=["example.org"], workers=3)
        out |= {
            f"{manager} prepare": release.prepare_script(s, R1, "abc", "me@box (pid 1)", force=False),
            f"{manager} prepare --force": release.prepare_script(s, R1, "abc", "me", force=True),
            f"{manager} switch": release.switch_script(s, R2, "me"),
            f"{manager} rollback": release.switch_script(s, R1, "me", verb="rolled back to",
                                                         lock_first=True, force=True),
            f"{manager} abort": release.abort_script(s, R1, "me"),
            f"{manager} list": release.list_script(s),
            f"{manager} target": script(release.rollback_target_lines(s, None)),
            f"{manager} target named": script(release.rollback_target_lines(s, R1)),
            f"{manager} lock status": script(lock.status_line(s)),
            f"{manager} probes": script(probe_script([facts.pkg("nginx"), facts.user("x"),
                                                      facts.dir_("/a b"), facts.sha("/x")])),
        }
    return out


def test_every_generated_script_passes_bash_n(make, syntax_ok):
    scripts = generated_scripts(make)
    assert len(scripts) == 20
    for name, text in scripts.items():
        result = syntax_ok(text)
        assert result.returncode == 0, f"{name}: {result.stderr}"


def test_bash_n_would_catch_a_broken_script(syntax_ok):
    assert syntax_ok(script("if true; then", "echo x")).returncode != 0


# -- shared_dirs ---------------------------------------------------------------------------

def test_shared_dirs_are_linked_into_the_release_and_created_app_writable(make):
    s = make(shared_dirs=["uploads", "data/cache"])
    assert release.shared_lines(s, "/srv/flasksample/releases/R.partial") == [
        "install -d -o flasksample -g flasksample -m 750 /srv/flasksample/shared/uploads",
        'rm -rf /srv/flasksample/releases/R.partial/uploads && mkdir -p "$(dirname '
        '/srv/flasksample/releases/R.partial/uploads)" && ln -s /srv/flasksample/shared/uploads '
        "/srv/flasksample/releases/R.partial/uploads",
        "install -d -o flasksample -g flasksample -m 750 /srv/flasksample/shared/data/cache",
        'rm -rf /srv/flasksample/releases/R.partial/data/cache && mkdir -p "$(dirname '
        '/srv/flasksample/releases/R.partial/data/cache)" && ln -s /srv/flasksample/shared/data/cache '
        "/srv/flasksample/releases/R.partial/data/cache",
    ]
    assert release.shared_lines(make(), "/x") == []


def test_shared_dirs_are_writable_through_the_units_sandbox(make):
    from deploy import templates

    unit = templates.render("systemd/app.service.j2", make(shared_dirs=["uploads"]))
    assert "ProtectSystem=strict\nReadWritePaths=-/srv/flasksample/shared/uploads\n" in unit
    assert "ReadWritePaths" not in templates.render("systemd/app.service.j2", make())


@pytest.mark.parametrize("bad", ["/etc", "../up", "a/../../b", "", "with space"])
def test_shared_dirs_must_stay_inside_the_release(make, bad):
    from deploy.errors import KitError

    with pytest.raises(KitError) as exc:
        make(shared_dirs=[bad])
    assert str(exc.value).startswith("setting 'shared_dirs' in fabric.yaml has ")


def test_prepare_undoes_itself_when_the_client_vanishes(s):
    """No pty, so no SIGHUP: a vanished client shows as SIGPIPE on the next output line,
    which the script traps into a failure (and so into the undo trap); the last line of the
    script is such an output line, so a client gone during the preflight is noticed too."""
    lines = release.prepare_script(s, R1, "h1", "me", force=False).splitlines()
    assert "trap 'exit 141' PIPE" in lines
    assert lines.index("trap 'exit 141' PIPE") > next(i for i, l in enumerate(lines) if "EXIT" in l
                                                       and "rc=$?" in l)
    assert lines[-1] == "echo ::prepared"


def test_a_prepared_marker_is_not_shown_to_the_user():
    from deploy.runner import parse_output

    out = parse_output("::step lock 1.0\nbuilding venv\n::prepared\n", "", 0, started=0.0)
    assert [l for l in out.lines if not l.startswith("::")] == ["building venv"]


def test_prepare_refuses_a_host_that_was_not_set_up(make):
    for manager, config in (("systemd", "/etc/systemd/system/flasksample.service"),
                            ("supervisor", "/etc/supervisor/conf.d/flasksample.conf")):
        s = make(process_manager=manager)
        check = release.set_up_check(s)
        assert check.startswith(f"[ -d /srv/flasksample/releases ] && [ -e {config} ] || ")
        text = release.prepare_script(s, R1, "h", "me", force=False)
        assert text.index(check) < text.index("::step lock")
