"""The fault suite (issue 13): a deploy hit by a fault, under load, ends with 0 failed requests,
`current` on a complete release, no lock left without a holder, and one line naming the next step.

Faults are injected at deterministic points (tests/e2e/faults.py): the deployed app's /healthz
waits while a hold file exists, so a deploy sits in its prepare (preflight) or its switch
(health gate) until the test has injected the fault; the finish step waits on a FIFO.
Tests that do not interfere share one host per xdist group (each leaves it serving, unlocked).
"""
import itertools
import subprocess
import sys
import time
import urllib.request

import pytest

from conftest import REPO_ROOT, AppCopy, http_get, load_on
from faults import (APP, ROOT, Holds, add_health_hook, current_release, disk_full, lock_state,
                    nsenter, reboot, releases, ssh_cut, ssh_sessions, wait_for)

# health_timeout: the holds are released well before it; the gate asks /healthz (the hook)
SETTINGS = {"health_timeout": 30, "health_path": "/healthz"}
_texts = (f"Hello fault {n}!" for n in itertools.count(1))


class Site:
    """One sandbox host set up and serving, with an app copy that carries the health hook."""

    def __init__(self, host, app: AppCopy):
        self.host, self.app = host, app
        self.holds = Holds(host)

    def args(self, config=None, *tasks) -> list[str]:
        return [sys.executable, "-m", "fabric", "-f", str(config or self.app.config),
                "-S", self.host.ssh_config, "-H", self.host.name, *tasks]

    def fab(self, *tasks, config=None, timeout=300) -> subprocess.CompletedProcess:
        return subprocess.run(self.args(config, *tasks), cwd=REPO_ROOT, capture_output=True,
                              text=True, timeout=timeout)

    def must(self, *tasks, config=None) -> subprocess.CompletedProcess:
        out = self.fab(*tasks, config=config)
        assert out.returncode == 0, f"fab {' '.join(tasks)}:\n{out.stdout}\n{out.stderr}"
        return out

    def popen(self, *tasks, config=None) -> subprocess.Popen:
        return subprocess.Popen(self.args(config, *tasks), cwd=REPO_ROOT, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def serving(self) -> str:
        """The release that answers `/` through nginx (the kit's gunicorn config names it in a
        header; /healthz answers only the host itself)."""
        with urllib.request.urlopen(f"http://{self.host.address}/", timeout=10) as resp:
            return resp.headers["X-Flasksample-Release"]

    def settled(self, timeout=60) -> None:
        """Wait until no deploy holds the lock any more (the server finished on its own)."""
        wait_for("the lock to be released", lambda: lock_state(self.host) == "unlocked", timeout)

    def check_state(self, lock: bool = True) -> str:
        """current on a complete release that is the one serving; no lock (unless `lock` is
        False: a stale one the next deploy must break by itself); return its name."""
        rel = current_release(self.host)
        assert self.serving() == rel
        if lock:
            assert lock_state(self.host) == "unlocked"
        assert not [r for r in releases(self.host) if r.endswith(".partial")]
        return rel

    def next_deploy_works(self) -> str:
        """A normal deploy (no --force) goes through after the fault and serves new code."""
        text = next(_texts)
        self.app.say(text)
        self.must("deploy")
        assert http_get(self.host, "/") == (200, text)
        return self.check_state()


def one_line_error(out: subprocess.CompletedProcess) -> str:
    err = out.stderr.strip()
    assert out.returncode != 0
    assert err.startswith("error: ") and len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert " — fix: " in err, err
    return err


@pytest.fixture(scope="module")
def site(sandbox_image, sandbox_registry, tmp_path_factory):
    """A module's own host (started here, removed at module end), set up and serving."""
    from deploy.sandbox import up

    name = sandbox_registry.new_name()
    try:
        host = up(name)
        app = AppCopy(tmp_path_factory.mktemp("faults"), **SETTINGS)
        add_health_hook(app)
        s = Site(host, app)
        s.must("setup", "deploy")
        yield s
    finally:
        sandbox_registry.remove([name])


@pytest.fixture
def clean(site):
    """Each test starts and ends with the host serving, unlocked, without holds."""
    site.holds.clear()
    site.check_state()
    yield site
    site.holds.clear()


# -- fab killed with kill -9 at each step ------------------------------------------------------------

def pause_at(site: Site, step: str) -> None:
    if step == "finish":
        site.holds.hold_finish()
    else:
        site.holds.hold("preflight" if step == "prepare" else "service")


def reached(site: Site, step: str, before: str):
    """A probe: true once a deploy started after `before` was serving is inside `step`."""
    if step == "prepare":
        # the cold preflight's transient unit, or a warm one, forked by the service's zygote
        return lambda: lock_state(site.host) != "unlocked" and nsenter(
            site.host, f"test -d /run/{APP}-preflight || pgrep -f '^flasksample zygote: preflight of '",
            check=False).returncode == 0
    if step == "switch":
        return lambda: nsenter(site.host, f"basename $(readlink {ROOT}/current)").stdout.strip() != before
    return site.holds.finish_waiting


def unpause(site: Site, step: str) -> None:
    if step == "finish":
        site.holds.unhold_finish()
    else:
        site.holds.clear()


@pytest.mark.xdist_group("faults-shared")
@pytest.mark.parametrize("step", ["prepare", "switch", "finish"])
def test_fab_killed_at_each_step(step, clean):
    site = clean
    before = site.serving()
    site.app.say(next(_texts))
    with load_on(site.host) as load:
        pause_at(site, step)
        proc = site.popen("deploy")
        wait_for(f"the deploy to reach {step}", reached(site, step, before))
        proc.kill()
        proc.communicate(timeout=30)
        unpause(site, step)
        site.settled()
        time.sleep(0.3)
    assert load.failures == [], load.failures[:5]
    after = site.check_state()
    # Killed before the switch: nothing changed. Once switched, the server finishes the deploy.
    assert (after == before) if step == "prepare" else (after != before)
    site.next_deploy_works()


# -- two deploys at the same moment from two checkouts --------------------------------------------

@pytest.mark.xdist_group("faults-shared")
def test_two_deploys_at_once_from_two_checkouts(clean, tmp_path):
    site = clean
    other = AppCopy(tmp_path, **SETTINGS)
    add_health_hook(other)
    site.app.say("Hello from checkout A!")
    other.say("Hello from checkout B!")
    with load_on(site.host) as load:
        site.holds.hold("preflight")  # whoever takes the lock first keeps it until the other ended
        procs = [site.popen("deploy"), site.popen("deploy", config=other.config)]
        first_done = wait_for("one deploy to end", lambda: [p for p in procs if p.poll() is not None])
        loser = first_done[0]
        winner = procs[1 - procs.index(loser)]
        _, loser_err = loser.communicate()
        site.holds.clear()
        win_out, win_err = winner.communicate(timeout=120)
        time.sleep(0.3)
    assert winner.returncode == 0, win_out + win_err
    err = one_line_error(subprocess.CompletedProcess([], loser.returncode, "", loser_err))
    assert "deploy locked by" in err and "wait for it" in err, err
    assert load.failures == [], load.failures[:5]
    site.check_state()
    expected = "Hello from checkout A!" if winner is procs[0] else "Hello from checkout B!"
    assert http_get(site.host, "/") == (200, expected)
    site.next_deploy_works()


# -- the disk full during unpack and during the venv build ---------------------------------------

@pytest.mark.xdist_group("faults-shared")
@pytest.mark.parametrize("where", ["unpack", "venv"])
def test_disk_full(where, clean):
    site = clean
    before = site.serving()
    site.app.say(next(_texts))
    reqs = site.app.dir / "requirements.txt"
    original = reqs.read_text()
    if where == "venv":  # new requirements: a new venv is built
        reqs.write_text(original + f"# {time.time()}\n")
    path = f"{ROOT}/releases" if where == "unpack" else f"{ROOT}/venvs"
    try:
        with load_on(site.host) as load, disk_full(site.host, path):
            out = site.fab("deploy")
            time.sleep(0.3)
    finally:
        reqs.write_text(original)
    err = one_line_error(out)
    # the cause, where, and what to do — not "read the lines above"
    assert "no space left" in err.lower() and path in err and "deploy again" in err, err
    assert load.failures == [], load.failures[:5]
    assert site.check_state() == before
    site.next_deploy_works()


# -- the host rebooted in the middle of a deploy ------------------------------------------------------

@pytest.mark.xdist_group("faults-shared")
def test_host_rebooted_in_the_middle_of_a_deploy(clean):
    site = clean
    before = site.serving()
    site.app.say(next(_texts))
    with load_on(site.host) as load:
        site.holds.hold("preflight")
        proc = site.popen("deploy")
        wait_for("the deploy to reach prepare", reached(site, "prepare", before))
        down_at = load.now()
        reboot(site.host)
        out, err = proc.communicate(timeout=120)
        wait_for("the app to answer again", lambda: http_get(site.host, "/")[0] == 200, timeout=60)
        up_at = load.now()
        site.holds.clear()
        time.sleep(1.0)
    # While the only host is down nothing can answer; before and after, nothing may fail.
    outside = [s for s in load.failures if s.start + s.latency < down_at or s.start > up_at]
    assert outside == [], outside[:5]
    print(f"reboot: {len(load.failures)} requests failed while the host was down")
    one_line_error(subprocess.CompletedProcess([], proc.returncode, out, err))
    assert site.check_state(lock=False) == before  # the app came back on the release that was live
    site.next_deploy_works()  # the dead deploy's lock is no obstacle


# -- a deploying machine whose clock is a day behind (R2) ------------------------------------------

@pytest.mark.xdist_group("faults-shared")
def test_deploy_from_a_clock_a_day_behind_then_deploy_and_rollback(clean):
    site = clean
    live_before = site.serving()
    with load_on(site.host) as load:
        site.app.say("Hello from yesterday!")
        skewed = subprocess.run(["faketime", "-f", "-1d", *site.args(None, "deploy")], cwd=REPO_ROOT,
                                capture_output=True, text=True, timeout=300)
        assert skewed.returncode == 0, skewed.stdout + skewed.stderr
        yesterday = site.check_state()
        assert http_get(site.host, "/") == (200, "Hello from yesterday!")
        assert yesterday < live_before  # its name sorts before the release it replaced
        # rollback from it goes to the release that was live before it, not "none before"
        site.must("rollback")
        assert site.check_state() == live_before
        site.must("rollback", "--to", yesterday)
        # the next normal deploy, then rollback: back to the skewed one, the one live before
        site.app.say("Hello today!")
        site.must("deploy")
        assert http_get(site.host, "/") == (200, "Hello today!")
        site.must("rollback")
        assert site.check_state() == yesterday
        assert http_get(site.host, "/") == (200, "Hello from yesterday!")
        time.sleep(0.3)
    assert load.failures == [], load.failures[:5]
    site.next_deploy_works()


# -- the SSH connection cut (packets dropped, not closed) in prepare, switch and finish ---------

CUT_SETTINGS = {**SETTINGS, "ssh_keepalive": 1, "step_timeout": 60}


@pytest.mark.xdist_group("faults-shared")
@pytest.mark.parametrize("step", ["prepare", "switch", "finish"])
def test_ssh_connection_cut_at_each_step(step, clean):
    site = clean
    before = site.serving()
    site.app.settings(**CUT_SETTINGS)
    site.app.say(next(_texts))
    try:
        with load_on(site.host) as load:
            pause_at(site, step)
            proc = site.popen("deploy")
            wait_for(f"the deploy to reach {step}", reached(site, step, before))
            with ssh_cut(site.host):
                unpause(site, step)  # the server goes on; fab must notice the dead link by itself
                t0 = time.monotonic()
                out, err = proc.communicate(timeout=180)
                print(f"cut {step}: fab ended after {time.monotonic() - t0:.1f}s: {err.strip()}")
                if step != "prepare":
                    site.settled()  # a switch that began finishes on the server
            time.sleep(0.3)
    finally:
        site.app.settings(**SETTINGS)
    assert load.failures == [], load.failures[:5]
    err = one_line_error(subprocess.CompletedProcess([], proc.returncode, out, err))
    assert "connection" in err.lower(), err
    if step == "prepare":
        assert site.check_state(lock=False) == before
        # The prepare ended on the server with the lock held for a switch that never comes. Once
        # the link is back, the host learns its SSH session is dead (a reset answers its next
        # retransmission); from then on the lock counts as stale.
        wait_for("the host to drop the dead SSH session", lambda: ssh_sessions(site.host) == 0,
                 timeout=180, every=0.5)
    else:
        assert site.check_state() != before
    site.next_deploy_works()  # no --force: a lock whose holder vanished is no obstacle
