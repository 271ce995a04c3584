"""Zero-downtime promises under load, the health gate, the deploy lock (issue #4; both managers)."""
import json
import signal
import subprocess
import sys
import time

import pytest

from conftest import REPO_ROOT, load_on

APP = "flasksample"
MANAGERS = ["systemd", "supervisor"]


def operator_commands(manager):
    if manager == "systemd":
        return {"reload": f"systemctl reload {APP}", "restart": f"systemctl restart {APP}"}
    return {"reload": f"supervisorctl signal HUP {APP}"}


@pytest.fixture(params=MANAGERS)
def live(request, sandbox_host, kit, app_copy):
    """A host set up with the given manager, serving the app's first release."""
    app_copy.settings(process_manager=request.param, health_timeout=6)
    kit(sandbox_host, "setup", "deploy", config=app_copy.config)
    return request.param


def answers_between(load, start, end):
    return {s.body for s in load.samples if start <= s.start and s.start + s.latency <= end and not s.failed}


@pytest.mark.both_releases
def test_no_request_fails_during_deploy_rollback_reload_restart(live, sandbox_host, kit, ssh, app_copy):
    host, root = sandbox_host, ssh(sandbox_host, "root")
    events = {}
    with load_on(host, keep_body=True) as load:
        time.sleep(0.5)
        app_copy.say("Hello v2!")
        t = load.now()
        kit(host, "deploy", config=app_copy.config)
        events["deploy"] = (t, load.now())
        time.sleep(0.5)
        t = load.now()
        kit(host, "rollback", config=app_copy.config)
        events["rollback"] = (t, load.now())
        time.sleep(0.5)
        for name, cmd in operator_commands(live).items():
            t = load.now()
            root.run(cmd, hide=True)
            time.sleep(1.0)
            events[name] = (t, load.now())
        t = load.now()
        kit(host, "restart", config=app_copy.config)
        events["fab restart"] = (t, load.now())
        time.sleep(0.5)
    failures = load.failures
    assert load.summary()["sent"] > 100
    assert failures == [], f"{len(failures)} failed: {failures[:5]} events={events}"
    # After a deploy (or rollback) returns, every answer comes from the new code.
    assert answers_between(load, events["deploy"][1], events["rollback"][0]) == {"Hello v2!"}
    assert answers_between(load, events["rollback"][1], load.now()) == {"Hello World!"}


def master_pid(root, manager):
    cmd = (f"systemctl show -p MainPID --value {APP}" if manager == "systemd" else
           f"cat /run/{APP}/gunicorn.pid")  # kept by supervisor's keeper (deploy/kit/keeper.py)
    return root.run(cmd, hide=True).stdout.strip()


@pytest.mark.parametrize("manager", MANAGERS)
def test_events_that_need_a_new_master_drop_nothing(manager, sandbox_host, kit, ssh, http, app_copy):
    """Issue 15: deploy with changed requirements, rollback across them, env.set and fab restart
    each start a new gunicorn master beside the old one (hand-over); not one request fails."""
    host, root = sandbox_host, ssh(sandbox_host, "root")
    app_copy.settings(process_manager=manager, health_timeout=30)
    kit(host, "setup", "deploy", config=app_copy.config)
    # a code-only deploy first: hand-overs after a reload (HUP) once kept the old master
    kit(host, "deploy", config=app_copy.config)
    venv = f"readlink -f /srv/{APP}/current/.venv"
    first_venv, masters, events = root.run(venv, hide=True).stdout.strip(), [master_pid(root, manager)], {}
    with load_on(host, keep_body=True) as load:
        time.sleep(0.5)
        reqs = app_copy.dir / "requirements.txt"
        reqs.write_text(reqs.read_text() + "idna==3.10  # a requirements change: a new venv\n")
        app_copy.say("Hello new venv!")
        for name, tasks in [("deploy", ["deploy"]), ("rollback", ["rollback"]),
                            ("env.set", ["env.set", "SECRET_KEY=handed-over"]), ("restart", ["restart"])]:
            t = load.now()
            out = kit(host, *tasks, config=app_copy.config, timeout=600).stdout
            events[name] = (t, load.now())
            masters.append(master_pid(root, manager))
            if name == "deploy":
                new_venv = root.run(venv, hide=True).stdout.strip()
                assert new_venv != first_venv
                # built from a copy of the live venv: its packages plus idna, its own paths
                assert f"starting from venv {first_venv.rsplit('/', 1)[1]}" in out, out
                listing = f"cd {{}}/lib/python3*/site-packages && ls -d *.dist-info"
                assert set(root.run(listing.format(new_venv), hide=True).stdout.split()) == \
                    set(root.run(listing.format(first_venv), hide=True).stdout.split()) | {"idna-3.10.dist-info"}
                assert not root.run(f"grep -rlI --exclude-dir=__pycache__ {first_venv} {new_venv}",
                                    hide=True, warn=True).stdout
            time.sleep(0.5)
    failures = load.failures
    assert load.summary()["sent"] > 100
    assert failures == [], f"{len(failures)} failed: {failures[:5]} events={events}"
    assert len(set(masters)) == len(masters), f"every event starts a new master: {masters}"
    assert answers_between(load, events["deploy"][1], events["rollback"][0]) == {"Hello new venv!"}
    assert answers_between(load, events["rollback"][1], load.now()) == {"Hello World!"}
    assert root.run(venv, hide=True).stdout.strip() == first_venv
    assert json.loads(http(host, "/healthz")[1])["secret_key_set"] is True
    # the manager follows the new master: an operator's restart still works after hand-overs
    if manager == "systemd":
        assert root.run(f"systemctl is-active {APP}", hide=True).stdout.strip() == "active"
    root.run(f"{'systemctl' if manager == 'systemd' else 'supervisorctl'} restart {APP}", hide=True)
    assert http(host, "/") == (200, "Hello World!")


BROKEN = {
    "import-error": ("import os", "import os\nraise RuntimeError('boom at import')"),
    "crash-at-boot": ("import os", "import os\nos._exit(3)"),
    "healthz-500": ('status="ok",', 'status=1/0,'),
    "healthz-hangs": ('        return jsonify(', '        import time; time.sleep(60)\n        return jsonify('),
    "unhealthy-only-in-service": (
        '        return jsonify(',
        '        import sys\n'
        '        if not any("preflight" in a for a in sys.argv):\n'
        '            return "sick", 500\n'
        '        return jsonify('),
}


@pytest.mark.parametrize("kind", list(BROKEN))
def test_broken_release_is_rolled_back_without_a_failed_request(kind, sandbox_host, kit, http, app_copy):
    host = sandbox_host
    app_copy.settings(health_timeout=8)
    kit(host, "setup", "deploy", config=app_copy.config)
    before = json.loads(http(host, "/healthz")[1])["release"]
    app_copy.patch(*BROKEN[kind])
    with load_on(host) as load:
        out = kit(host, "deploy", config=app_copy.config, check=False)
        time.sleep(0.3)
    assert out.returncode == 1, out.stdout + out.stderr
    assert out.stderr.startswith("error: ") and "Traceback" not in out.stderr
    assert "health check" in out.stderr
    if kind == "import-error":
        assert "boom at import" in out.stdout  # the app's own log lines are shown
    if kind == "unhealthy-only-in-service":
        assert f"rolled back to {before}" in out.stdout
    assert load.failures == [], load.failures[:5]
    assert http(host, "/") == (200, "Hello World!")
    assert json.loads(http(host, "/healthz")[1])["release"] == before


def fab_popen(host, config, *tasks):
    return subprocess.Popen([sys.executable, "-m", "fabric", "-f", str(config), "-S", host.ssh_config,
                             "-H", host.name, *tasks], cwd=REPO_ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=default_sigint)


def default_sigint():
    """fab reacts to Ctrl-C as in a terminal even when the suite itself ignores SIGINT (a
    background job of a non-interactive shell, e.g. `.ci/run &`, starts with it ignored, and
    Python then never turns it into KeyboardInterrupt)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def wait_lock(root, present=True, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (root.run(f"test -d /srv/{APP}/.kit/lock", hide=True, warn=True).exited == 0) == present:
            return
        time.sleep(0.1)
    raise AssertionError("lock state not reached")


def test_deploy_lock_refuses_second_deploy_and_force_breaks_a_dead_one(sandbox_host, kit, ssh, http, app_copy):
    host, root = sandbox_host, ssh(sandbox_host, "root")
    kit(host, "setup", "deploy", config=app_copy.config)
    app_copy.patch("import os", "import os\nimport time; time.sleep(3)")  # a slow boot
    first = fab_popen(host, app_copy.config, "deploy")
    wait_lock(root)
    second = kit(host, "deploy", config=app_copy.config, check=False)
    assert second.returncode == 1
    assert "deploy locked by" in second.stderr and " since 20" in second.stderr
    assert "--force" in second.stderr
    assert first.wait(120) == 0, first.stdout + first.stderr

    # A lock left by a deploy that died: refused until broken explicitly.
    root.run(f"mkdir /srv/{APP}/.kit/lock && echo 'ghost@elsewhere' > /srv/{APP}/.kit/lock/holder"
             f" && date -u +%FT%TZ > /srv/{APP}/.kit/lock/since", hide=True)
    refused = kit(host, "deploy", config=app_copy.config, check=False)
    assert refused.returncode == 1 and "ghost@elsewhere" in refused.stderr
    forced = kit(host, "deploy", "--force", config=app_copy.config)
    assert "broke the lock held by ghost@elsewhere" in forced.stdout
    assert http(host, "/")[0] == 200


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["ctrl-c", "kill-9"])
def test_interrupted_deploy_leaves_old_release_and_next_deploy_works(sig, sandbox_host, kit, ssh, http,
                                                                     app_copy):
    host, root = sandbox_host, ssh(sandbox_host, "root")
    kit(host, "setup", "deploy", config=app_copy.config)
    before = json.loads(http(host, "/healthz")[1])["release"]
    app_copy.patch("import os", "import os\nimport time; time.sleep(5)")
    with load_on(host) as load:
        proc = fab_popen(host, app_copy.config, "deploy")
        wait_lock(root)
        time.sleep(0.5)  # inside the preflight
        proc.send_signal(sig)
        proc.wait(60)
        assert proc.returncode != 0
        wait_lock(root, present=False)  # kill -9: when the server notices the client is gone
    assert root.run(f"ls /srv/{APP}/releases", hide=True).stdout.split() == [before]
    assert load.failures == []
    assert json.loads(http(host, "/healthz")[1])["release"] == before
    app_copy.patch("import time; time.sleep(5)", "")
    app_copy.say("Hello after interrupt!")
    kit(host, "deploy", config=app_copy.config)
    assert http(host, "/") == (200, "Hello after interrupt!")


def test_old_releases_are_cleaned_but_current_and_previous_kept(sandbox_host, kit, ssh, http, app_copy):
    host, root = sandbox_host, ssh(sandbox_host, "root")
    app_copy.settings(keep_releases=2)
    kit(host, "setup", config=app_copy.config)
    master = None
    for n in range(4):
        app_copy.say(f"Hello {n}!")
        kit(host, "deploy", config=app_copy.config)
        master = master or root.run(f"systemctl show -p MainPID --value {APP}", hide=True).stdout
    releases = root.run(f"ls /srv/{APP}/releases", hide=True).stdout.split()
    assert len(releases) == 2
    # The release the master started in is gone, and reloads still work with the same master.
    assert root.run(f"systemctl show -p MainPID --value {APP}", hide=True).stdout == master
    assert root.run(f"journalctl -u {APP} | grep -c \"can't chdir\"", hide=True, warn=True).stdout.strip() == "0"
    kit(host, "rollback", config=app_copy.config)
    assert http(host, "/") == (200, "Hello 2!")
    # Rolled back: current is now the older of the two; the newer one stays as well.
    kit(host, "rollback", "--to", releases[1], config=app_copy.config)
    assert http(host, "/") == (200, "Hello 3!")
