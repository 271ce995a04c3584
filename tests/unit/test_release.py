"""The remote programs (deploy/remote/*.sh) with the values deploy/release.py gives them: run
for real in local bash on a temp directory, with systemctl/curl/journalctl/runuser replaced by
bash functions (no root needed for the logic, no network); `bash -n` on every generated script
and `shellcheck` on every shipped shell file."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time

import pytest

from deploy import health, layout, lock, release
from deploy.facts import probe_script
from deploy.lock import Holder
from deploy.shell import HEADER, fail, flatten, q, script, step, write_file

R1, R2, R3 = "20261126-230000.000-aaaaaaa", "20261126-231000.000-bbbbbbb", "20261126-232000.000-ccccccc"
ME = Holder("me@box (pid 1)", "token-me")


@pytest.fixture
def srv(tmp_path, make):
    """Settings whose base_dir is a temp directory, and helpers to lay releases out in it."""
    root = tmp_path / "srv"
    (root / "releases").mkdir(parents=True)
    (root / "venvs").mkdir()
    (root / "shared").mkdir()
    (root / ".kit").mkdir()
    s = make(base_dir=str(root), health_timeout=1)

    def add(rel, venv="h1"):
        d = root / "releases" / rel
        d.mkdir()
        (d / "REVISION").write_text(rel + "\n")
        (root / "venvs" / venv).mkdir(exist_ok=True)
        (d / ".venv").symlink_to(f"../../venvs/{venv}")
        return d

    def point(rel, link="current"):
        path = root / link
        if path.is_symlink():
            path.unlink()
        path.symlink_to(f"releases/{rel}")

    return s, root, add, point


# Bash functions standing in for the server's tools. Calls are appended to $KIT_CALLS; the fake
# nginx answers with the release `current` points to, or with $KIT_STALE when set; the
# preflight (preflight.py under systemd-run) passes unless $KIT_PF_SICK is set; `date +%s%N`
# advances 0.1 s per call so a failing health gate gives up at once; runuser runs the command
# (logged).
STUBS = r"""
systemctl() { echo "systemctl $*" >> "$KIT_CALLS"; if [ "$1" = is-active ]; then return "${KIT_INACTIVE:-0}"; fi; }
supervisorctl() { echo "supervisorctl $*" >> "$KIT_CALLS"; if [ "$1" = status ]; then echo "app RUNNING"; fi; }
journalctl() { echo "journalctl $*" >> "$KIT_CALLS"; echo "app log line"; echo "::error spoofed by the app"; }
systemd-run() {
  echo "systemd-run $*" >> "$KIT_CALLS"
  if [ -n "${KIT_PF_SICK:-}" ] && [[ " $* " == *"/preflight.py "* ]]; then
    printf '%s\n' "[x] [INFO] Booting" "app log line" "::error spoofed by the app" "last health answer: HTTP 500"
    return 1
  fi
}
runuser() { echo "runuser $1 $2" >> "$KIT_CALLS"; shift 3; "$@"; }
chown() { echo "chown $*" >> "$KIT_CALLS"; }
curl() {
  echo "curl $*" >> "$KIT_CALLS"
  if [[ " $* " == *" --unix-socket "* ]]; then zygote "$@"; return; fi
  local rel status=${KIT_STATUS:-200} a
  rel=${KIT_STALE:-$(cat "$KIT_ROOT/current/REVISION")}
  if [[ " $* " == *" -D - "* ]]; then  # probe_nginx: headers, then kit-status
    printf 'HTTP/1.1 %s OK\r\nX-Flasksample-Release: %s\r\n\r\nkit-status %s\n' "$status" "$rel" "$status"
  else  # gate_nginx: `CODE RELEASE` per URL
    for a in "$@"; do if [[ $a == http://* ]]; then echo "$status $rel"; fi; done
  fi
}
# the preflight's zygote, answering $KIT_ZY_CODE (its request is kept in ../zygote-request)
zygote() {
  local out=
  while [ $# -gt 0 ]; do if [ "$1" = -o ]; then out=$2; fi; shift; done
  tr '\0' ' ' > "$KIT_ROOT/../zygote-request"
  case $KIT_ZY_CODE in
    422) printf '%s\n' "[x] [INFO] Booting" "app log line" "::error spoofed by the app" > "$out" ;;
    503) echo 'the env file changed since the service started' > "$out" ;;
  esac
  printf '%s' "$KIT_ZY_CODE"
  [ "$KIT_ZY_CODE" != 000 ]
}
sleep() { :; }
date() {
  if [ "$1" = "+%s%N" ]; then
    local n; n=$(( $(cat "$KIT_CLOCK") + 100000000 )); echo "$n" > "$KIT_CLOCK"; echo "$n"
  else command date "$@"; fi
}
"""


GATE = "curl -s -m 2 -w %{http_code} %header{x-flasksample-release}\\n "


def gate_call(url: str, extra: str = "-H Host: localhost") -> str:
    """The one curl of a gate round: three requests to `url` through nginx."""
    return GATE + extra + f" -o /dev/null {url}" * 3


def run_stubbed(root, text, stdin: str = "", **env):
    """Run a generated script with the stubs defined before its values and programs."""
    calls, clock = root.parent / "calls", root.parent / "clock"
    calls.write_text("")
    clock.write_text("1000000000000000000")
    exports = "".join(f"export {k}={q(str(v))}\n" for k, v in
                      dict(KIT_CALLS=calls, KIT_CLOCK=clock, KIT_ROOT=root, **env).items())
    result = subprocess.run(["bash", "-c", exports + STUBS + text], input=stdin, capture_output=True,
                            text=True, timeout=20)
    return result, calls.read_text().splitlines()


def take_lock(root, who: Holder, what="release x"):
    lock_dir = root / ".kit" / "lock"
    lock_dir.mkdir()
    (lock_dir / "token").write_text(who.token + "\n")
    (lock_dir / "holder").write_text(f"{who.who}, {what}\n")
    (lock_dir / "since").write_text("2026-11-26T23:00:00Z\n")


def lock_script(s, who, force=False):
    """A tiny program over lib.sh's lock functions (the lock is what the real ones use)."""
    return release.run("abort", s, who, force, RELEASE="x").replace(
        release.shell_program_text("abort"), 'lock_take "release x"\n')


# -- shell.py --------------------------------------------------------------------------------

def test_script_header_and_flatten():
    assert flatten(["a", ["b", ["", "c"]], "", "d"]) == ["a", "b", "c", "d"]
    assert script("a", ["b"]) == HEADER + "a\nb\n"
    assert HEADER.startswith("set -euo pipefail\n")


def test_step_and_fail_lines(run_bash):
    assert step("venv") == 'echo "::step venv $(date +%s.%N)"'
    assert fail("it's broken", "fix it", 3) == \
        "{ printf '::error %s — %s\\n' 'it'\"'\"'s broken' 'fix it'; exit 3; }"
    out = run_bash(script(fail("it's broken", "fix it", 3)))
    assert (out.returncode, out.stdout) == (3, "::error it's broken — fix it\n")
    why = run_bash(script("kit_why=\"the server said 'no'\"", fail("no luck: ", "try again", 2, detail="kit_why")))
    assert (why.returncode, why.stdout) == (2, "::error no luck: the server said 'no' — try again\n")
    with pytest.raises(ValueError):
        fail("x", "y", detail="a; rm -rf /")


def test_no_python_builder_writes_an_error_marker_by_hand():
    """Every error a script built in Python reports goes through shell.fail (one format, quoted)."""
    from deploy.settings import PROJECT_ROOT
    for f in (PROJECT_ROOT / "deploy").rglob("*.py"):
        if f.name not in ("shell.py", "protocol.py", "runner.py"):
            assert not re.search(r"(echo|printf) .?::error", f.read_text()), f


def test_program_values_are_quoted_once(run_bash):
    from deploy.shell import assign
    assert assign("A", "x'; touch /tmp/owned; echo '") == "A='x'\"'\"'; touch /tmp/owned; echo '\"'\"''"
    assert assign("L", ["a b", "c"]) == "L=('a b' c)"
    assert assign("F", True) == "F=1"
    with pytest.raises(ValueError):
        assign("lower", "x")
    out = run_bash(assign("L", ["a b", "$c"]) + '\nprintf "<%s>" "${L[@]}"')
    assert out.stdout == "<a b><$c>"


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


def test_each_run_has_its_own_scratch_dir_removed_at_the_end(run_bash):
    """R5: not one directory shared by every app and run on the host."""
    from deploy.shell import RUN_SCRATCH, scratch
    assert scratch("x").startswith(RUN_SCRATCH + "/") and RUN_SCRATCH.startswith("/run/flasksample-kit/run-")
    out = run_bash(script('echo "$KIT_TMP"; stat -c %a "$KIT_TMP"'))
    assert out.stdout.split() == [RUN_SCRATCH, "700"]
    assert not os.path.exists(RUN_SCRATCH)


# -- exit codes and markers: one table, one parser -----------------------------------------

def test_exit_codes_agree_between_python_and_shell():
    from deploy.protocol import Exit
    from deploy.shell import remote_file
    line = next(l for l in remote_file("lib.sh").splitlines() if l.startswith("readonly EXIT_"))
    shell = {k.removeprefix("EXIT_"): int(v) for k, v in re.findall(r"(EXIT_\w+)=(\d+)", line)}
    assert shell == {e.name: e.value for e in Exit}


def test_no_program_writes_an_error_marker_or_exit_code_by_hand():
    from deploy.shell import REMOTE
    for f in REMOTE.iterdir():
        if f.name.endswith(".sh") and f.name != "lib.sh":
            text = f.read_text()
            assert "::error" not in text, f.name
            assert not re.search(r"exit [0-9]", text.replace("exit 0", "")), f.name


# -- lock ------------------------------------------------------------------------------------

def run_lock(srv, body, who=ME, force=False, **env):
    s, root, _, _ = srv
    text = release.run("abort", s, who, force, RELEASE=R1)
    text = text[:text.index("# shellcheck shell=bash\n# abort:")] + body + "\n"
    return run_stubbed(root, text, **env)[0]


def test_lock_second_deploy_is_refused_naming_the_holder_and_force_breaks_it(srv):
    s, root, _, _ = srv
    alice, bob = Holder("alice@a", "ta"), Holder("bob@b", "tb")
    first = run_lock(srv, f'lock_take "release {R1}"', alice)
    assert first.returncode == 0, first.stderr
    assert (root / ".kit/lock/holder").read_text() == f"alice@a, release {R1}\n"
    second = run_lock(srv, f'lock_take "release {R2}"', bob)
    assert second.returncode == lock.LOCKED_EXIT
    assert re.fullmatch(rf"::error deploy locked by alice@a, release {R1} since \d{{4}}-\d\d-\d\dT\S+Z — "
                        r"wait for it, or if it died run again with --force\n", second.stdout)
    assert run_lock(srv, "lock_status").stdout.startswith(f"locked by alice@a, release {R1} since ")
    forced = run_lock(srv, f'lock_take "release {R2}"', bob, force=True)
    assert forced.returncode == 0
    assert forced.stdout.startswith(f"broke the lock held by alice@a, release {R1} since ")
    assert (root / ".kit/lock/holder").read_text() == f"bob@b, release {R2}\n"
    run_lock(srv, "lock_free", bob)
    assert run_lock(srv, "lock_status").stdout == "unlocked\n"


def test_a_broken_lock_is_never_freed_by_its_old_holder(srv):
    """L1: alice's lock was broken with --force by bob; alice's later unlock leaves bob's."""
    s, root, _, _ = srv
    alice, bob = Holder("same@host (pid 7)", "ta"), Holder("same@host (pid 7)", "tb")
    run_lock(srv, 'lock_take "x"', alice)
    run_lock(srv, 'lock_take "y"', bob, force=True)
    run_lock(srv, "lock_free", alice)
    assert (root / ".kit/lock/token").read_text() == "tb\n"
    run_lock(srv, "lock_free", Holder("same@host (pid 7)", "t"))  # a prefix is not the token
    assert (root / ".kit/lock").exists()
    run_lock(srv, "lock_free", bob)
    assert not (root / ".kit/lock").exists()


def test_lock_values_carry_the_holder_and_the_runs_token(s):
    v = lock.values(s, Holder("me", "t1"), force=True)
    assert v == {"KIT_DIR": "/srv/flasksample/.kit", "LOCK": "/srv/flasksample/.kit/lock",
                 "HOLDER": "me", "TOKEN": "t1", "FORCE": True}
    assert lock.holder().token == lock.RUN_TOKEN and len(lock.RUN_TOKEN) == 32


# -- health ----------------------------------------------------------------------------------

@pytest.mark.parametrize("domains, header", [(["_"], "localhost"), (["*.a.org", "b.org"], "b.org"),
                                             (["a.org", "b.org"], "a.org")])
def test_health_host_header(make, domains, header):
    assert health.host_header(make(domains=domains)) == header


def test_healthy_needs_the_wanted_release_and_gives_up_after_the_timeout(srv):
    s, root, add, point = srv
    add(R1)
    point(R1)
    ok, calls = run_lock(srv, f"healthy {R1}"), None
    assert ok.returncode == 0, ok.stdout + ok.stderr
    _, calls = run_stubbed(root, release.run("abort", s, ME, RELEASE=R1).split("# shellcheck shell=bash\n# abort:")[0]
                           + f"\nhealthy {R1}\n")
    assert calls == [gate_call("http://127.0.0.1/")]  # three answers in a row, from one curl
    bad = run_lock(srv, f"healthy {R2}")
    assert bad.returncode == 1
    assert bad.stdout == f'last health answer: HTTP 200, release {R1}\n'
    assert run_lock(srv, "healthy ''").returncode == 0


def test_health_path_reaches_curl_verbatim(srv, make):
    _, root, add, point = srv
    add(R1)
    point(R1)
    s = make(base_dir=str(root), health_path="/healthz?deep=1&x=2")
    text = release.run("abort", s, ME, RELEASE=R1).split("# shellcheck shell=bash\n# abort:")[0]
    _, calls = run_stubbed(root, text + f"\nhealthy {R1}\n")
    assert calls and calls[0] == gate_call("http://127.0.0.1/healthz?deep=1&x=2")


@pytest.mark.parametrize("health_path,status,ok", [
    ("", 200, True), ("", 302, True), ("", 404, True), ("", 500, False), ("", 503, False),
    ("/up", 200, True), ("/up", 204, True), ("/up", 302, False), ("/up", 404, False)])
def test_healthy_judges_the_status_by_whether_the_app_has_a_health_path(srv, make, health_path, status, ok):
    _, root, add, point = srv
    add(R1)
    point(R1)
    s = make(base_dir=str(root), health_path=health_path, health_timeout=1)
    text = release.run("abort", s, ME, RELEASE=R1).split("# shellcheck shell=bash\n# abort:")[0]
    out, _ = run_stubbed(root, text + f"\nhealthy {R1}\n", KIT_STATUS=status)
    assert (out.returncode == 0) == ok, out.stdout


# -- prepare ---------------------------------------------------------------------------------

def archive_of(files: dict) -> str:
    import base64, io, tarfile
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return base64.b64encode(buf.getvalue()).decode()


APP_FILES = {"serve.py": "app = 1\n", ".flasksample/requirements.txt": "gunicorn\n",
             ".flasksample/gunicorn.conf.py": ""}
# `python3 -m venv DIR --without-pip` makes DIR/bin/python (logs its arguments, runs a script it
# is given with sh) and DIR/bin/pip (what ensurepip would put there).
VENV_STUB = ('python3() { echo "python3 $*" >> "$KIT_CALLS"; mkdir -p "$3/bin"; '
             'printf \'#!/bin/sh\\necho "venv-python $*" >> "$KIT_CALLS"; [ "$1" = -m ] || exec sh "$@"\\n\' '
             '> "$3/bin/python"; chmod +x "$3/bin/python"; '
             'printf "#!/bin/sh\\n" > "$3/bin/pip"; chmod +x "$3/bin/pip"; }\n')


@pytest.fixture
def prepared_host(srv, make, tmp_path):
    """A host set up (releases/ and the unit exist) and a prepare script runner."""
    s, root, add, point = srv
    unit = tmp_path / "flasksample.service"
    unit.write_text("")

    def run_prepare(release_id=R2, req="h2", settings=None, stdin=None, **env):
        st = settings or s
        text = release.prepare_script(st, release_id, req, ME, force=False)
        text = text.replace(q("/etc/systemd/system/flasksample.service"), q(str(unit)))
        text = text.replace("PREFLIGHT_ZYGOTE=/run/flasksample/zygote.sock", 'PREFLIGHT_ZYGOTE="${ZYGOTE:-/run/flasksample/zygote.sock}"')
        return run_stubbed(root, VENV_STUB + text, stdin=archive_of(APP_FILES) if stdin is None else stdin, **env)

    return s, root, add, point, run_prepare


def test_prepare_unpacks_builds_the_venv_as_the_app_user_and_boots_the_preflight(prepared_host):
    s, root, add, point, run_prepare = prepared_host
    add(R1)
    point(R1)
    result, calls = run_prepare()
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert [l.split()[1] for l in lines if l.startswith("::step ")] == ["lock", "unpack", "venv", "preflight"]
    assert lines[-1] == "::prepared"
    rel = root / "releases" / R2
    assert (rel / "REVISION").read_text() == R2 + "\n" and (rel / "serve.py").exists()
    assert os.readlink(rel / ".venv") == "../../venvs/h2" and (root / "venvs/h2/.complete").exists()
    # P3: python -m venv and pip run as the app user; the result is made root's afterwards
    assert "runuser -u flasksample" in calls
    venv = f"python3 -m venv {root}/venvs/h2 --without-pip"
    assert venv in calls
    assert calls.index(f"chown -R -P -h root:root {root}/venvs/h2") > calls.index(venv)
    # not the system's python (a stub here): the venv gets its own pip through ensurepip
    assert f"venv-python -m ensurepip --default-pip" in calls
    assert f"venv-python {root}/venvs/h2/bin/pip install -q --disable-pip-version-check --no-input " \
           f"-r {rel}/.flasksample/requirements.txt" in calls
    # the preflight: the kit's preflight.py in a transient unit with the service's sandbox,
    # waited for (its exit code is the verdict); nothing polls it from outside
    run = next(c for c in calls if c.startswith("systemd-run "))
    assert run.startswith("systemd-run --quiet --collect --wait --pipe --unit=flasksample-preflight.service ")
    assert "--property=ProtectSystem=strict" in run and f"{rel}/.flasksample/preflight.py / 500 1 " in run
    assert not any(c.startswith("curl") for c in calls)
    assert (root / ".kit/lock/token").read_text() == ME.token + "\n"  # held until the switch
    assert not list((root / ".kit").glob("upload.*"))  # the archive is gone


def test_with_the_system_python_the_venv_runs_debians_pip_wheel_unpacked_once_by_root(srv, make, tmp_path):
    """No ensurepip: the app user runs the system's pip wheel under the venv's python, from the
    wheel file the first time while root unzips and byte-compiles it (never running it), from
    that copy afterwards."""
    import sys
    from tests.unit.fakepip import fake_pip_wheel
    s, root, add, point = srv
    wheels = tmp_path / "wheels"
    fake_pip_wheel(wheels, "import os, sys\n"
                   "where = 'zip' if '.whl' in __file__ else 'dir'\n"
                   "open(os.environ['KIT_CALLS'], 'a').write(f'wheel-pip {where} ' + ' '.join(sys.argv[1:]) + '\\n')\n")
    py = tmp_path / "python3"  # the system python: makes venvs, else the real one
    py.write_text(f'#!/bin/sh\necho "python3 $*" >> "$KIT_CALLS"\n'
                  f'if [ "$1" = -m ] && [ "$2" = venv ]; then mkdir -p "$3/bin"; ln -s {sys.executable} "$3/bin/python"; exit 0; fi\n'
                  f'exec {sys.executable} "$@"\n')
    py.chmod(0o755)
    st = make(base_dir=str(root), health_timeout=1, python=str(py))
    unit = tmp_path / "flasksample.service"
    unit.write_text("")
    text = release.prepare_script(st, R2, "h2", ME, force=False).replace(
        q("/etc/systemd/system/flasksample.service"), q(str(unit))).replace(
        "system_python=/usr/bin/python3", f"system_python={py}").replace(
        "pip_wheels=/usr/share/python-wheels", f"pip_wheels={wheels}")
    for n in (1, 2):
        if n == 2:  # requirements changed, after the switch freed the lock
            shutil.rmtree(root / "venvs" / "h2")
            shutil.rmtree(root / ".kit" / "lock")
        result, calls = run_stubbed(root, text, stdin=archive_of(APP_FILES))
        assert result.returncode == 0, result.stdout + result.stderr
        pip = root / "venvs" / ".pip-99.1-py3-none-any"
        assert (pip / "pip" / "__pycache__").is_dir() and (pip / ".complete").exists()
        assert f"python3 -m venv {root}/venvs/h2 --without-pip" in calls
        assert not any("ensurepip" in c for c in calls)
        assert f"wheel-pip {'zip' if n == 1 else 'dir'} install -q --disable-pip-version-check --no-input " \
               f"-r {root}/releases/{R2}/.flasksample/requirements.txt" in calls
        # made once: the second build only runs it
        assert sum(c.startswith("python3 -m compileall") for c in calls) == (1 if n == 1 else 0)
        assert (root / "venvs/h2/.complete").exists()
        shutil.rmtree(root / "releases" / R2)


def test_a_deploy_waits_for_a_venv_another_run_builds_then_reuses_it(prepared_host):
    """setup builds the first venv in the background (deploy/steps/venv.py); a deploy meanwhile
    takes its turn on venvs/ (flock) and finds the venv complete: one builder per directory."""
    import fcntl
    import threading
    import time
    s, root, add, point, run_prepare = prepared_host
    fd = os.open(root / "venvs", os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX)  # the other builder, half way
    (root / "venvs" / "h2").mkdir()
    done = {}
    deploy = threading.Thread(target=lambda: done.update(out=run_prepare()))
    deploy.start()
    for _ in range(200):  # until its venv step (the release is unpacked), then a little more
        if (root / "releases" / R2).exists():
            break
        time.sleep(0.05)
    time.sleep(0.5)
    assert "out" not in done  # waiting, not using the half venv
    (root / "venvs" / "h2" / ".complete").touch()
    os.close(fd)
    deploy.join(30)
    result, calls = done["out"]
    assert result.returncode == 0, result.stdout + result.stderr
    assert "waiting for the build of venv h2 another run started" in result.stdout
    assert "building" not in result.stdout and not any(c.startswith("python3") for c in calls)



def test_a_release_is_readable_by_the_apps_group_and_only_its_static_dir_by_others(prepared_host, make):
    """X2: a file a release carries is not world-readable; nginx (other) reads static_dir."""
    s, root, add, point, run_prepare = prepared_host
    st = make(base_dir=str(root), health_timeout=1, static_dir="web/static")
    files = dict(APP_FILES, **{"config.py": "SECRET = 1\n", "web/static/site.css": "b{}\n", "web/tpl.html": ""})
    result, calls = run_prepare(settings=st, stdin=archive_of(files))
    assert result.returncode == 0, result.stdout + result.stderr
    rel = root / "releases" / R2
    assert f"chown -R root:flasksample {rel}.partial" in calls
    mode = lambda p: oct((rel / p).stat().st_mode & 0o777)
    assert (mode("config.py"), mode("web/tpl.html"), mode(".")) == ("0o640", "0o640", "0o751")
    assert (mode("web"), mode("web/static"), mode("web/static/site.css")) == ("0o751", "0o755", "0o644")


def test_venv_is_reused_when_complete(prepared_host):
    s, root, add, point, run_prepare = prepared_host
    (root / "venvs" / "h2").mkdir()
    (root / "venvs" / "h2" / ".complete").touch()
    result, calls = run_prepare()
    assert result.returncode == 0, result.stderr
    assert "building" not in result.stdout and not any(c.startswith("python3") for c in calls)


def test_a_failing_pip_undoes_the_release_and_frees_the_lock(prepared_host):
    s, root, add, point, run_prepare = prepared_host
    result, calls = run_stubbed(root, VENV_STUB.replace('chmod +x "$3/bin/pip"',
                                                        'printf "echo ::step boom 1; exit 1\\n" >> "$3/bin/pip"; chmod +x "$3/bin/pip"')
                                + release.prepare_script(s, R2, "h2", ME, False).replace(
                                    q("/etc/systemd/system/flasksample.service"), q(str(root))),
                                stdin=archive_of(APP_FILES))
    assert result.returncode == 1
    assert result.stdout.splitlines()[-1] == ("::error pip install of the pinned requirements failed (its log is "
                                              "above) — correct the app's requirements and deploy again")
    assert "  > ::step boom 1" in result.stdout.splitlines()  # X3: pip's output cannot pose as a marker
    assert not (root / "releases" / R2).exists() and not (root / "venvs/h2").exists()
    assert not (root / ".kit/lock").exists()


def test_a_failing_preflight_shows_the_apps_log_indented_and_undoes_everything(prepared_host):
    s, root, add, point, run_prepare = prepared_host
    add(R1)
    point(R1)
    result, calls = run_prepare(KIT_PF_SICK=1)
    assert result.returncode == release.PREFLIGHT_EXIT
    out = result.stdout.splitlines()
    assert "--- the new release failed its health check before taking traffic; its log:" in out
    assert "  > app log line" in out and "  > ::error spoofed by the app" in out  # X3
    assert "  > last health answer: HTTP 500" in out and "  > [x] [INFO] Booting" not in out
    assert out[-1].startswith("::error the new release failed its health check before taking traffic")
    assert "systemctl stop flasksample-preflight.service" in calls
    assert sorted(p.name for p in (root / "releases").iterdir()) == [R1]
    assert not (root / ".kit/lock").exists()


@pytest.mark.parametrize("code,how", [
    ("200", "warm (forked by the running service's zygote)"),
    ("422", "warm (forked by the running service's zygote)"),
    ("503", "cold (the env file changed since the service started)"),
    ("000", "cold (the zygote gave no answer (HTTP 000))"),
    (None, "cold (the service runs no zygote)"),
])
def test_the_preflight_is_warm_when_the_services_zygote_gives_a_verdict_else_cold(prepared_host, tmp_path, code, how):
    import socket
    s, root, add, point, run_prepare = prepared_host
    add(R1)
    point(R1)
    sock = tmp_path / "zygote.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    if code is not None:
        listener.bind(str(sock))
    result, calls = run_prepare(KIT_ZY_CODE=code or "000", ZYGOTE=sock)
    listener.close()
    assert f"preflight: {how}" in result.stdout.splitlines()
    rel = root / "releases" / R2
    asked = [c for c in calls if " --unix-socket " in c]
    ran_cold = any(c.startswith("systemd-run ") for c in calls)
    if code is None:
        assert not asked and ran_cold
        return
    assert len(asked) == 1 and asked[0].startswith(f"curl -s -m 8 -H Expect: --unix-socket {sock} --data-binary @- -o ")
    assert asked[0].endswith("/preflight.log -w %{http_code} http://zygote/preflight/1")
    # the request: the time limit, then the preflight's command line after its python
    assert (tmp_path / "zygote-request").read_text() == (
        f"3 {rel}/.flasksample/preflight.py / 500 1 --chdir {rel} --config {rel}/.flasksample/gunicorn.conf.py "
        "--no-control-socket --workers 1 serve:app ")
    assert ran_cold == (code not in ("200", "422"))
    if code == "422":
        assert result.returncode == release.PREFLIGHT_EXIT
        out = result.stdout.splitlines()
        assert "  > app log line" in out and "  > ::error spoofed by the app" in out
        assert "  > [x] [INFO] Booting" not in out
        assert not (root / "releases" / R2).exists()
    else:
        assert result.returncode == 0, result.stdout + result.stderr


def test_prepare_refuses_while_another_deploy_holds_the_lock_and_keeps_its_lock(prepared_host):
    s, root, add, point, run_prepare = prepared_host
    take_lock(root, Holder("alice", "ta"))
    result, _ = run_prepare()
    assert result.returncode == lock.LOCKED_EXIT
    assert (root / ".kit/lock/token").read_text() == "ta\n"
    assert not (root / "releases" / R2).exists()


def test_prepare_refuses_a_host_that_was_not_set_up(srv):
    s, root, _, _ = srv
    result, calls = run_stubbed(root, release.prepare_script(s, R2, "h2", ME, False),
                                stdin=archive_of(APP_FILES))
    assert result.returncode == 2
    assert result.stdout.splitlines()[-1] == (
        "::error this host is not set up for flasksample under systemd "
        "(/etc/systemd/system/flasksample.service is missing) — run fab setup first")
    assert not (root / ".kit/lock").exists()


def test_prepare_undoes_itself_when_the_client_vanishes(s):
    """No pty, so no SIGHUP: a vanished client shows as SIGPIPE on the next output line,
    which the script traps into a failure (and so into the undo hook); the last line of the
    script is such an output line, so a client gone during the preflight is noticed too."""
    text = release.prepare_script(s, R1, "h1", ME, force=False)
    lines = text.splitlines()
    assert "trap 'exit \"$EXIT_GONE\"' PIPE" in lines
    assert lines.index("at_exit undo_prepare") < lines.index("trap 'exit \"$EXIT_GONE\"' PIPE")
    assert lines.index('lock_take "release $RELEASE"') < lines.index("at_exit undo_prepare")
    assert [l for l in lines if l][-1].startswith("mark prepared")
    # stdin (the archive) is read in full before anything can refuse, into root's .kit
    assert text.index('base64 -d > "$archive"') < text.index('lock_take "release $RELEASE"')
    assert 'archive=$(mktemp "$KIT_DIR/upload.XXXXXX")' in text


def test_preflight_under_systemd_has_exactly_the_services_sandbox(make):
    """The transient unit gets the unit's sandbox from the same file, systemd/sandbox.conf.j2
    (they cannot drift), as release_command does; RemoveIPC is left out (its end would remove
    the running app's IPC objects)."""
    from deploy import templates
    from deploy.managers import systemd
    s = make(shared_dirs=["uploads"], workers=3)
    v = systemd.program_values(s, f"/srv/flasksample/releases/{R1}")
    props = [a.removeprefix("--property=") for a in v["PREFLIGHT_RUN"] if a.startswith("--property=")]
    unit = templates.render("systemd/app.service.j2", s).splitlines()
    sandbox = [l for l in templates.render("systemd/sandbox.conf.j2", s).splitlines()
               if "=" in l and not l.startswith(("{", "#", " ")) and not l.startswith("RemoveIPC=")]
    assert props[6:] == sandbox and all(line in unit for line in sandbox) and len(sandbox) > 20
    assert "ReadWritePaths=-/srv/flasksample/shared/uploads" in sandbox
    assert props[:6] == ["User=flasksample", "Group=flasksample", "RuntimeDirectory=flasksample-preflight",
                         "EnvironmentFile=-/srv/flasksample/shared/env", f"WorkingDirectory=/srv/flasksample/releases/{R1}",
                         "RuntimeMaxSec=22"]
    rel = f"/srv/flasksample/releases/{R1}"
    # preflight.py PATH TOP TIMEOUT, then gunicorn's own options for the release (no socket)
    assert v["PREFLIGHT_RUN"][v["PREFLIGHT_RUN"].index("--") + 1:] == [
        f"{rel}/.venv/bin/python", f"{rel}/.flasksample/preflight.py", "/", "500", "20",
        "--chdir", rel, "--config", f"{rel}/.flasksample/gunicorn.conf.py", "--no-control-socket",
        "--workers", "1", "serve:app"]


def test_preflight_under_supervisor_runs_the_programs_own_command(make):
    from deploy import templates
    from deploy.managers import supervisor
    s = make(process_manager="supervisor", workers=3)
    v = supervisor.program_values(s, "/srv/flasksample/current")
    cmd = v["PREFLIGHT_RUN"][2].replace("unix:/run/flasksample-preflight/gunicorn.sock",
                                        "unix:/run/flasksample/gunicorn.sock").replace("--workers 1", "--workers 3")
    # the preflight's python and program (PATH TOP TIMEOUT) in place of the gunicorn script
    cmd = cmd.replace("/srv/flasksample/current/.venv/bin/python /srv/flasksample/current/.flasksample/preflight.py / 500 20 ",
                      "/srv/flasksample/current/.venv/bin/gunicorn ")
    assert f" {templates.supervisor_word('/bin/sh')} -c {templates.supervisor_word(cmd)}\n" in \
        templates.render("supervisor/app.conf.j2", s)


def test_the_gunicorn_command_line_is_built_once(make):
    from deploy import gunicorn, templates
    s = make(workers=3)
    assert f"ExecStart={' '.join(gunicorn.unit_argv(s))}\n" in templates.render("systemd/app.service.j2", s)
    assert gunicorn.unit_argv(s) == [
        "/srv/flasksample/current/.venv/bin/gunicorn", "--chdir", "/srv/flasksample/current", "--config",
        "/srv/flasksample/current/.flasksample/gunicorn.conf.py", "--no-control-socket",
        "--workers", "3", "serve:app"]


# -- shared_dirs -----------------------------------------------------------------------------

def test_shared_dirs_are_linked_into_the_release_and_created_app_writable(prepared_host, make):
    s, root, add, point, run_prepare = prepared_host
    st = make(base_dir=str(root), health_timeout=1, shared_dirs=["uploads", "data/cache"])
    result, calls = run_prepare(settings=st)
    assert result.returncode == 0, result.stdout + result.stderr
    rel = root / "releases" / R2
    assert os.readlink(rel / "uploads") == f"{root}/shared/uploads"
    assert os.readlink(rel / "data/cache") == f"{root}/shared/data/cache"
    assert f"chown -h flasksample:flasksample {root}/shared/data/cache" in calls
    assert not any(c.startswith("chown") and c.endswith(f"{root}/shared/data") for c in calls)


def test_a_symlink_planted_at_a_shared_dir_is_replaced_not_followed(prepared_host, make, tmp_path):
    """P2: root never chowns through an app-made symlink (and never runs install -d there)."""
    s, root, add, point, run_prepare = prepared_host
    victim = tmp_path / "victim"
    victim.mkdir()
    (root / "shared" / "uploads").symlink_to(victim)
    st = make(base_dir=str(root), health_timeout=1, shared_dirs=["uploads"])
    result, calls = run_prepare(settings=st)
    assert result.returncode == 0, result.stderr
    assert (root / "shared/uploads").is_dir() and not (root / "shared/uploads").is_symlink()
    assert not any(str(victim) in c for c in calls)
    assert "install -d -o" not in release.prepare_script(st, R2, "h", ME, False)


@pytest.mark.parametrize("bad", ["/etc", "../up", "a/../../b", "", "with space"])
def test_shared_dirs_must_stay_inside_the_release(make, bad):
    from deploy.errors import KitError

    with pytest.raises(KitError) as exc:
        make(shared_dirs=[bad])
    assert str(exc.value).startswith("setting 'shared_dirs' in fabric.yaml has ")


def test_nested_shared_dirs_are_refused(make):
    """P2: the app owns shared/data, so root must never create shared/data/cache in it."""
    from deploy.errors import KitError

    with pytest.raises(KitError, match="'data/cache' inside 'data'"):
        make(shared_dirs=["data", "data/cache"])
    make(shared_dirs=["data/cache", "data/logs"])


def test_shared_dirs_are_writable_through_the_units_sandbox(make):
    from deploy import templates

    unit = templates.render("systemd/app.service.j2", make(shared_dirs=["uploads"]))
    assert "ProtectSystem=strict\nReadWritePaths=-/srv/flasksample/shared/uploads\n" in unit
    assert "ReadWritePaths" not in templates.render("systemd/app.service.j2", make())


# -- switch ----------------------------------------------------------------------------------

def switch(srv, rel, who=ME, **kw):
    s, root, _, _ = srv
    env = {k: kw.pop(k) for k in list(kw) if k.startswith("KIT_")}
    return run_stubbed(root, release.switch_script(s, rel, who, **kw), **env)


@pytest.mark.parametrize("new_venv, inactive, expected", [
    ("h1", 0, ["systemctl show -p MainPID --value flasksample.service",  # same requirements: the
               "systemctl show -p MainPID --value flasksample.service",  # workers to retire, then
               "systemctl reload flasksample.service"]),     # HUP (no master in the stub: systemctl's)
    ("h2", 0, ["systemctl show -p MainPID --value flasksample.service",   # the venv changed: a new
               "systemctl restart flasksample.service"]),     # master (hand-over; none runs here)
    ("h1", 1, ["systemctl start flasksample.service"]),       # not running: start
])
def test_reload_unless_the_venv_changed(srv, new_venv, inactive, expected):
    s, root, add, point = srv
    add(R1, "h1"), add(R2, new_venv)
    point(R1)
    take_lock(root, ME)
    result, calls = switch(srv, R2, KIT_INACTIVE=inactive)
    assert calls[:1 + len(expected)] == ["systemctl is-active -q flasksample.service", *expected]


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
app_process() { [ "${1:-0}" -gt 1 ] 2> /dev/null; }  # the stand-in pids are the app user's
"""


@pytest.mark.parametrize("old, ready_after, rc, tail", [
    ("100", 3, 0, ["kill -TERM 100"]),                  # USR2, MainPID becomes 200, TERM the old
    ("0", 1, 0, ["systemctl restart flasksample.service"]),  # nothing runs: a plain restart
    ("100", 10**9, 1, []),                               # never ready: the old master serves on
])
def test_systemd_handover(srv, make, tmp_path, old, ready_after, rc, tail):
    _, root, *_ = srv
    s = make(base_dir=str(root), health_timeout=4)
    shown = tmp_path / "shown"
    shown.write_text("0")
    text = release.run("abort", s, ME, RELEASE=R1).split("# shellcheck shell=bash\n# abort:")[0]
    result, calls = run_stubbed(root, text + HANDOVER_STUBS + "\nmgr_handover\n", KIT_OLD=old,
                                KIT_READY_AFTER=ready_after, KIT_SHOWN=shown)
    assert result.returncode == rc, result.stderr
    assert calls[0] == "systemctl show -p MainPID --value flasksample.service"
    if old != "0":
        assert calls[1] == "kill -USR2 100"
        assert not any(c.startswith("kill -TERM") for c in calls[:-1])
    assert calls[-len(tail):] == tail if tail else "kill -TERM 100" not in calls
    if rc:
        assert "was not ready within" in result.stdout and "the old one still serves" in result.stdout
        assert calls.count("kill -USR2 100") > 1  # repeated while a handed-over master is not promoted


def test_app_process_is_a_running_process_of_the_apps_user(srv, make):
    import getpass
    _, root, *_ = srv
    s = make(base_dir=str(root))
    text = release.run("abort", s, ME, RELEASE=R1).split("# shellcheck shell=bash\n# abort:")[0]
    mine = text.replace("\nAPP_USER=flasksample\n", f"\nAPP_USER={getpass.getuser()}\n")
    checks = 'for p in "$$" 1 0 x "" 99999999; do if app_process "$p"; then echo "$p yes"; else echo "$p no"; fi; done'
    result, _ = run_stubbed(root, mine + checks)
    assert result.stdout.split("\n")[1:] == ["1 no", "0 no", "x no", " no", "99999999 no", ""], result.stderr
    assert result.stdout.split()[1] == "yes"
    assert run_stubbed(root, text + 'app_process "$$" || echo no')[0].stdout == "no\n"  # root's, not the app's


def test_supervisor_reload_signals_the_master_under_the_keeper_itself(srv, make, tmp_path):
    """HUP straight to the master the keeper names (no supervisorctl start-up); a pid file that
    names anything else (no keeper its parent): `supervisorctl signal HUP`."""
    import getpass
    _, root, *_ = srv
    keeper = tmp_path / "keeper.py"
    keeper.write_text("import subprocess, sys\nsubprocess.run(['sleep', '30'])\n")
    parent = subprocess.Popen([sys.executable, str(keeper), "x"])
    try:
        while not (master := subprocess.run(["pgrep", "-P", str(parent.pid)], capture_output=True,
                                            text=True).stdout.strip()):
            time.sleep(0.02)
        pidfile = tmp_path / "gunicorn.pid"
        s = make(base_dir=str(root), process_manager="supervisor")
        for named, expected in ((master, f"kill -HUP {master}"), (str(parent.pid), "supervisorctl signal HUP flasksample")):
            pidfile.write_text(named + "\n")
            text = release.run("abort", s, ME, RELEASE=R1).split("# shellcheck shell=bash\n# abort:")[0]
            text = text.replace(f"MASTER_PIDFILE={layout.master_pidfile(s)}", f"MASTER_PIDFILE={pidfile}").replace(
                "\nAPP_USER=flasksample\n", f"\nAPP_USER={getpass.getuser()}\n")
            result, calls = run_stubbed(root, text + 'kill() { echo "kill $*" >> "$KIT_CALLS"; }\nmgr_reload\n')
            assert calls == [expected], result.stderr
    finally:
        subprocess.run(["pkill", "-P", str(parent.pid)])
        parent.wait()


@pytest.mark.parametrize("pid, expected", [("100", ["kill -HUP 100"]),
                                          ("0", ["systemctl reload flasksample.service"])])
def test_systemd_reload_signals_the_master_itself(srv, make, pid, expected):
    """HUP straight to MainPID, as the unit's ExecReload would, without systemd starting a
    /bin/kill in the unit's sandbox; no main process: `systemctl reload`."""
    _, root, *_ = srv
    s = make(base_dir=str(root))
    shown = root.parent / "shown"
    shown.write_text("0")
    text = release.run("abort", s, ME, RELEASE=R1).split("# shellcheck shell=bash\n# abort:")[0]
    result, calls = run_stubbed(root, text + HANDOVER_STUBS + "\nmgr_reload\n", KIT_OLD=pid,
                                KIT_READY_AFTER=10**9, KIT_SHOWN=shown)
    assert result.returncode == 0, result.stderr
    assert calls == ["systemctl show -p MainPID --value flasksample.service", *expected]


@pytest.mark.parametrize("manager, restart, running", [
    ("systemd", "systemctl restart flasksample-worker.service", "systemctl is-active -q flasksample-worker.service"),
    ("supervisor", "supervisorctl restart flasksample-worker", "supervisorctl status flasksample-worker")])
def test_processes_restart_with_the_switch_and_a_dead_one_fails_the_gate(srv, make, manager, restart, running):
    _, root, add, point = srv
    s = make(base_dir=str(root), health_timeout=1, process_manager=manager, processes={"worker": "python w.py"})
    add(R1), add(R2)
    point(R1)
    take_lock(root, ME)
    ok, calls = run_stubbed(root, release.switch_script(s, R2, ME))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert restart in calls and running in calls
    point(R1)
    take_lock(root, ME)
    dead = 'systemctl() { echo "systemctl $*" >> "$KIT_CALLS"; [ "$1 ${3:-}" != "is-active flasksample-worker.service" ]; }\n' \
           'supervisorctl() { echo "supervisorctl $*" >> "$KIT_CALLS"; echo "x FATAL"; }\n'
    bad, _ = run_stubbed(root, dead + release.switch_script(s, R2, ME).replace(
        "# shellcheck shell=bash\n# The process manager's", dead + "# shellcheck shell=bash\n# The process manager's"))
    if manager == "systemd":
        assert bad.returncode == release.UNHEALTHY_EXIT, bad.stdout
        assert "--- a process of processes: is not running; its log:" in bad.stdout
        assert os.readlink(root / "current") == f"releases/{R1}"


def test_release_command_runs_once_before_the_preflight_and_its_failure_switches_nothing(prepared_host, make):
    s, root, add, point, run_prepare = prepared_host
    st = make(base_dir=str(root), health_timeout=1, release_command="flask db upgrade")
    assert "RELEASE_COMMAND_RUN=()" in release.prepare_script(st, R2, "h2", ME, False)  # other hosts
    fake = 'systemd-run() { echo "systemd-run $*" >> "$KIT_CALLS"; if [[ " $* " == *" --wait "* ]]; then echo "::error from app"; return "${KIT_RC_RC:-0}"; fi; }\n'
    text = release.prepare_script(st, R2, "h2", ME, False, release_command=True)
    text = text.replace(q("/etc/systemd/system/flasksample.service"), q(str(root)))
    ok, calls = run_stubbed(root, VENV_STUB + fake + text, stdin=archive_of(APP_FILES))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    steps = [l.split()[1] for l in ok.stdout.splitlines() if l.startswith("::step ")]
    assert steps == ["lock", "unpack", "venv", "release_command", "preflight"]
    assert "  > ::error from app" in ok.stdout.splitlines()  # X3
    run = next(c for c in calls if " --wait " in f" {c} ")
    assert "--property=ProtectSystem=strict" in run and run.endswith("-- /bin/sh -c flask db upgrade")
    shutil.rmtree(root / ".kit/lock")  # as the switch would
    bad, _ = run_stubbed(root, VENV_STUB + fake + text.replace(R2, R3), stdin=archive_of(APP_FILES), KIT_RC_RC=1)
    assert bad.returncode == 5
    assert bad.stdout.splitlines()[-1].startswith("::error the release_command failed")
    assert not (root / "releases" / R3).exists() and not (root / ".kit/lock").exists()


def test_switch_runs_health_gates_records_previous_and_finishes(srv):
    s, root, add, point = srv
    add(R1), add(R2)
    point(R1)
    take_lock(root, ME)  # held by this deploy since prepare
    result, calls = switch(srv, R2, Holder("me@box", ME.token))
    assert result.returncode == 0, result.stdout + result.stderr
    assert os.readlink(root / "current") == f"releases/{R2}"
    assert os.readlink(root / "previous") == f"releases/{R1}"
    assert f"::previous {R1}" in result.stdout.splitlines()
    assert re.findall(r"::step (\w+)", result.stdout) == ["switch", "health", "finish"]
    assert calls[:4] == ["systemctl is-active -q flasksample.service",
                         *["systemctl show -p MainPID --value flasksample.service"] * 2,
                         "systemctl reload flasksample.service"]
    assert sum(c.startswith("curl ") for c in calls) == 1  # the gate: one curl, three answers
    assert re.fullmatch(rf"\S+Z deployed {R2} by me@box\n", (root / ".kit/deploys.log").read_text())
    assert not (root / ".kit" / "lock").exists()


def test_failed_health_gate_points_current_back_removes_the_release_and_reports(srv):
    s, root, add, point = srv
    add(R1), add(R2)
    point(R1)
    take_lock(root, ME)
    result, calls = switch(srv, R2, KIT_STALE="nope")
    assert result.returncode == release.UNHEALTHY_EXIT
    out = result.stdout.splitlines()
    assert out[-1] == (f"::error release {R2} failed its health check through nginx; {R1} serves again"
                       " — correct the app (its log is above) and deploy again")
    assert f"--- release {R2} failed its health check through nginx; the app log says:" in out
    assert "  > app log line" in out and f"rolled back to {R1}" in out
    assert "  > ::error spoofed by the app" in out  # X3
    assert os.readlink(root / "current") == f"releases/{R1}"
    assert calls.count("systemctl reload flasksample.service") == 2
    assert not (root / ".kit" / "lock").exists()
    assert not (root / ".kit" / "deploys.log").exists()
    assert not (root / "releases" / R2).exists()  # R2: a release that failed its gate goes
    assert not (root / "previous").exists()


def test_a_failed_rollback_switch_keeps_its_target(srv):
    s, root, add, point = srv
    add(R1), add(R2)
    point(R2)
    result, _ = switch(srv, R1, verb="rolled back to", lock_first=True, KIT_STALE="nope")
    assert result.returncode == release.UNHEALTHY_EXIT
    assert (root / "releases" / R1).exists() and os.readlink(root / "current") == f"releases/{R2}"


def test_a_failure_after_the_gate_keeps_the_release_live_and_frees_the_lock(srv):
    """R1: the deploy log or cleanup failing after the switch is a warning, never a failed
    switch (which would make fab abort, i.e. delete, the live release)."""
    s, root, add, point = srv
    add(R1), add(R2)
    point(R1)
    take_lock(root, ME)
    (root / ".kit" / "deploys.log").mkdir()  # cannot be appended to
    result, _ = switch(srv, R2)
    assert result.returncode == 0, result.stdout
    assert "warning: could not write" in result.stdout
    assert os.readlink(root / "current") == f"releases/{R2}" and (root / "releases" / R2).is_dir()
    assert not (root / ".kit/lock").exists()


def test_abort_never_removes_the_live_or_previous_release(srv):
    """R1: even under its own lock, abort leaves the release `current` points to."""
    s, root, add, point = srv
    add(R1), add(R2)
    point(R2)
    point(R1, "previous")
    for rel in (R2, R1):
        take_lock(root, ME)
        run_stubbed(root, release.abort_script(s, rel, ME))
        assert (root / "releases" / rel).is_dir() and not (root / ".kit/lock").exists()


def test_switch_refuses_when_this_deploy_no_longer_holds_the_lock(srv):
    s, root, add, point = srv
    add(R1), add(R2)
    point(R1)
    take_lock(root, Holder("bob", "tb"))  # broken and taken over with --force
    result, calls = switch(srv, R2)
    assert result.returncode == lock.LOCKED_EXIT
    assert os.readlink(root / "current") == f"releases/{R1}" and calls == []
    assert (root / ".kit/lock/token").read_text() == "tb\n"


def test_switch_to_a_missing_release_refuses(srv):
    s, root, add, point = srv
    add(R1)
    point(R1)
    result, calls = switch(srv, R3, lock_first=True)
    assert result.returncode == 2
    assert result.stdout.splitlines()[-1] == \
        f"::error release {R3} does not exist on this host — pick one from fab releases"
    assert os.readlink(root / "current") == f"releases/{R1}" and calls == []
    assert not (root / ".kit" / "lock").exists()


def test_rollback_switch_refuses_while_another_deploy_holds_the_lock(srv):
    s, root, add, point = srv
    add(R1), add(R2)
    point(R2)
    take_lock(root, Holder("alice", "ta"))
    result, _ = switch(srv, R1, Holder("bob", "tb"), verb="rolled back to", lock_first=True)
    assert result.returncode == lock.LOCKED_EXIT
    assert os.readlink(root / "current") == f"releases/{R2}"


def test_abort_removes_the_prepared_release_only_under_its_own_lock(srv):
    s, root, add, point = srv
    add(R1), add(R2)
    (root / "releases" / (R2 + ".partial")).mkdir()
    point(R1)
    alice = Holder("alice@a (pid 7)", "ta")
    take_lock(root, alice)
    run_stubbed(root, release.abort_script(s, R2, Holder("alice@a (pid 7)", "other")))
    assert (root / "releases" / R2).exists() and (root / ".kit" / "lock").exists()
    run_stubbed(root, release.abort_script(s, R2, alice))
    assert sorted(p.name for p in (root / "releases").iterdir()) == [R1]
    assert not (root / ".kit" / "lock").exists()


# -- cleanup and rollback target -------------------------------------------------------------

RELS = [f"20261126-23{m:02d}00.000-{m:07x}" for m in range(8)]  # oldest first


def test_cleanup_keeps_the_newest_keep_releases(srv, make):
    s, root, add, point = srv
    for i, r in enumerate(RELS[:-1]):
        add(r, venv="old" if i < 3 else "new")
    add(RELS[-1], venv="new")
    point(RELS[-2])
    take_lock(root, ME)
    (root / "releases" / "junk.partial").mkdir()
    result, _ = switch(srv, RELS[-1])
    assert result.returncode == 0, result.stdout
    assert sorted(p.name for p in (root / "releases").iterdir()) == RELS[-5:] + ["junk.partial"]
    assert sorted(p.name for p in (root / "venvs").iterdir()) == ["new"]


def test_cleanup_never_removes_current_or_the_previous_live_release(srv, make):
    _, root, add, point = srv
    s = make(base_dir=str(root), health_timeout=1, keep_releases=2)
    for i, r in enumerate(RELS):
        add(r, venv=f"v{i}")
    point(RELS[7])
    run_stubbed(root, release.switch_script(s, RELS[3], ME, verb="rolled back to", lock_first=True))
    assert os.readlink(root / "previous") == f"releases/{RELS[7]}"
    assert sorted(p.name for p in (root / "releases").iterdir()) == [RELS[3], RELS[6], RELS[7]]
    assert sorted(p.name for p in (root / "venvs").iterdir()) == ["v3", "v6", "v7"]


def test_previous_is_the_release_live_before_even_after_a_failed_deploy(srv, make):
    """R2: D live (named by a clock a day behind, so it sorts first), E fails its gate, F is
    deployed: previous is D, kept by cleanup, and rollback goes to D; E is gone."""
    _, root, add, point = srv
    s = make(base_dir=str(root), health_timeout=1, keep_releases=2)
    D, B, C, E, F = "20261125-230000.000-ddddddd", RELS[1], RELS[2], RELS[4], RELS[5]
    for r in (D, B, C, E, F):
        add(r)
    point(D)
    take_lock(root, ME)
    bad, _ = run_stubbed(root, release.switch_script(s, E, ME), KIT_STALE="nope")
    assert bad.returncode == release.UNHEALTHY_EXIT and not (root / "releases" / E).exists()
    take_lock(root, ME)
    good, _ = run_stubbed(root, release.switch_script(s, F, ME))
    assert good.returncode == 0, good.stdout
    assert sorted(p.name for p in (root / "releases").iterdir()) == [D, C, F]
    target, _ = run_stubbed(root, release.rollback_target_script(s, None))
    assert (target.returncode, target.stdout) == (0, D + "\n")


def test_rollback_target_falls_back_to_the_release_before_current_without_previous(srv):
    s, root, add, point = srv
    for r in (R1, R2, R3):
        add(r)
    (root / "releases" / (R3 + "x.partial")).mkdir()
    point(R3)
    result, _ = run_stubbed(root, release.rollback_target_script(s, None))
    assert (result.returncode, result.stdout) == (0, R2 + "\n")
    point(R1)
    result, _ = run_stubbed(root, release.rollback_target_script(s, None))
    assert result.returncode == 2
    assert result.stdout == ("::error there is no release before the current one to roll back to — "
                             "deploy one first, or name one with --to\n")


def test_rollback_to_a_named_release(srv):
    s, root, add, point = srv
    add(R1), add(R2)
    point(R2)
    result, _ = run_stubbed(root, release.rollback_target_script(s, R1))
    assert (result.returncode, result.stdout) == (0, R1 + "\n")
    missing, _ = run_stubbed(root, release.rollback_target_script(s, R3))
    assert missing.stdout == f"::error no release {R3} on this host — pick one from fab releases\n"


@pytest.mark.parametrize("bad", ["x'; touch /tmp/owned; echo '", "..", "../../evilrel", R1 + "\n", "nope"])
def test_a_release_name_must_have_the_kits_shape(s, bad):
    """S2: --to and names read back from a host are refused unless they fullmatch."""
    from deploy.errors import KitError

    for build in (lambda: release.rollback_target_script(s, bad), lambda: release.switch_script(s, bad, ME),
                  lambda: release.abort_script(s, bad, ME)):
        with pytest.raises(KitError, match="is not a release name"):
            build()


def test_an_odd_release_name_on_the_host_is_ignored(srv, run_bash):
    s, root, add, point = srv
    add(R1)
    (root / "releases" / "x'; touch owned; echo '").mkdir()
    (root / "releases" / "..x").mkdir()
    point(R1)
    result, _ = run_stubbed(root, release.list_script(s))
    assert result.stdout == f"* {R1} (current)\n-- last deploys:\n"


def test_list_script_marks_current_and_previous(srv):
    s, root, add, point = srv
    add(R1), add(R2), add(R3)
    point(R2)
    point(R1, "previous")
    result, _ = run_stubbed(root, release.list_script(s))
    assert result.stdout == f"  {R1} (previous)\n* {R2} (current)\n  {R3}\n-- last deploys:\n"


# -- every generated script parses; every shipped shell file is shellcheck-clean ------------

def generated_scripts(make):
    from deploy import envfile, facts, service
    out = {}
    for manager in ("systemd", "supervisor"):
        s = make(process_manager=manager, domains=["example.org"], workers=3, shared_dirs=["uploads"])
        out |= {
            f"{manager} prepare": release.prepare_script(s, R1, "abc", ME, force=False),
            f"{manager} prepare --force": release.prepare_script(s, R1, "abc", ME, force=True),
            f"{manager} switch": release.switch_script(s, R2, ME),
            f"{manager} rollback": release.switch_script(s, R1, ME, verb="rolled back to",
                                                         lock_first=True, force=True),
            f"{manager} abort": release.abort_script(s, R1, ME),
            f"{manager} list": release.list_script(s),
            f"{manager} target": release.rollback_target_script(s, None),
            f"{manager} target named": release.rollback_target_script(s, R1),
            f"{manager} status": service.status_script(s),
            f"{manager} logs": service.logs_script(s, True, 5, "1 h ago", False),
            f"{manager} restart": service.restart_script(s, ME),
            f"{manager} env change": envfile.change_script(s, ME),
            f"{manager} probes": script(probe_script([facts.pkg("nginx"), facts.user("x"),
                                                      facts.dir_("/a b"), facts.sha("/x")])),
        }
    return out


def test_every_generated_script_passes_bash_n(make, syntax_ok):
    scripts = generated_scripts(make)
    assert len(scripts) == 26
    for name, text in scripts.items():
        result = syntax_ok(text)
        assert result.returncode == 0, f"{name}: {result.stderr}"


def test_bash_n_would_catch_a_broken_script(syntax_ok):
    assert syntax_ok(script("if true; then", "echo x")).returncode != 0


def shipped_shell_files():
    from deploy.settings import PROJECT_ROOT
    from deploy.shell import REMOTE
    files = sorted(str(f) for f in REMOTE.iterdir() if f.name.endswith(".sh"))
    files += sorted(str(p) for p in PROJECT_ROOT.rglob("*.sh")
                    if ".venv" not in p.parts and "remote" not in p.parts and ".git" not in p.parts)
    return files


def test_shellcheck_is_clean_on_every_shipped_shell_program():
    files = shipped_shell_files()
    assert len(files) >= 10
    if shutil.which("shellcheck") is None:
        if os.environ.get("CI") == "true" or os.environ.get("FLASKSAMPLE_REQUIRE_E2E") == "1":
            pytest.fail("shellcheck is not installed — fix: make deps (it is in the Makefile's APT_DEPS)")
        pytest.skip("shellcheck is not installed (make deps installs it)")
    result = subprocess.run(["shellcheck", "--severity=style", *files],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_shell_programs_ship_as_package_data():
    import tomllib
    from deploy.settings import PROJECT_ROOT
    conf = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())
    assert "remote/*.sh" in conf["tool"]["setuptools"]["package-data"]["deploy"]


# -- R6: restart under the deploy lock; logs -------------------------------------------------

def test_restart_takes_the_deploy_lock_and_waits_for_health(srv):
    from deploy import service
    s, root, add, point = srv
    add(R1)
    point(R1)
    ok, calls = run_stubbed(root, service.restart_script(s, ME))
    assert ok.returncode == 0 and ok.stdout.splitlines()[-1] == "restarted and healthy", ok.stdout
    assert not (root / ".kit/lock").exists()
    take_lock(root, Holder("alice", "ta"), "release x")  # a deploy is switching
    refused, calls = run_stubbed(root, service.restart_script(s, ME))
    assert refused.returncode == lock.LOCKED_EXIT and calls == []
    assert "deploy locked by alice, release x" in refused.stdout


@pytest.mark.parametrize("bad", ["abc", "0", "-3", "1.5"])
def test_logs_lines_must_be_a_whole_number(bad):
    from deploy import service
    from deploy.errors import KitError
    with pytest.raises(KitError, match=f"-n {bad} is not a number of lines"):
        service.lines_count(bad)
    assert service.lines_count("20") == 20


def test_logs_since_reads_the_plain_log_files_too(srv, make):
    """supervisor's log and nginx's are files: --since goes through lib.sh's log_files (its
    filter: test_log_files.py); a date the server cannot read is the one-line error."""
    from deploy import service
    _, root, _, _ = srv
    s = make(base_dir=str(root), process_manager="supervisor")
    for web in (False, True):
        out, _ = run_stubbed(root, service.logs_script(s, False, 5, "10 min ago", web))
        assert out.returncode == 0 and "::error" not in out.stdout, out.stdout
        bad, _ = run_stubbed(root, service.logs_script(s, False, 5, "not a time", web))
        assert bad.returncode == 2 and bad.stdout.startswith("::error --since not a time is not a date")


def test_every_program_gets_every_value_its_files_use(make):
    """A value a program's files read but the program was not given is an unbound variable on
    the host (set -u) — e.g. a hand-over that silently fell back to a restart."""
    from deploy import envfile, service
    from deploy.shell import remote_file
    for manager in ("systemd", "supervisor"):
        s = make(process_manager=manager, processes={"w": "x"})
        programs = {"prepare": release.prepare_script(s, R1, "h", ME, False), "switch": release.switch_script(s, R1, ME),
                    "abort": release.abort_script(s, R1, ME), "rollback_target": release.rollback_target_script(s, None),
                    "releases": release.list_script(s), "status": service.status_script(s),
                    "restart": service.restart_script(s, ME), "env_change": envfile.change_script(s, ME),
                    "logs": service.logs_script(s, False, 5, None, False)}
        for name, text in programs.items():
            given = set(re.findall(r"^([A-Z][A-Z0-9_]*)=", text, re.M)) | {"KIT_TMP", "KIT_RC", "EPOCHREALTIME"}
            body = remote_file("lib.sh") + remote_file(f"{manager}.sh") + remote_file(f"{name}.sh")
            used = set(re.findall(r"\$\{?([A-Z][A-Z0-9_]*)", body)) - {"EXIT_FAILED", "EXIT_USAGE", "EXIT_PREFLIGHT",
                                                                    "EXIT_UNHEALTHY", "EXIT_RELEASE_COMMAND",
                                                                    "EXIT_LOCKED", "EXIT_GONE", "HEALTH_CURL", "LOG_SINCE_AWK",
                                                                    "KIT_AT_EXIT"}
            missing = used - given
            if name != "prepare":  # only prepare calls the preflight_* functions
                missing -= {"PREFLIGHT_UNIT", "PREFLIGHT_RUN", "PREFLIGHT_SOCK", "PREFLIGHT_DIR"}
            assert not missing, (manager, name, missing)
