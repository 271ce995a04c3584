"""Setup on a host that just booted (issue 10, item 8): the dpkg lock, extra packages, progress."""
import subprocess
import sys

from conftest import REPO_ROOT

# Holds the dpkg frontend lock (as unattended-upgrades does after boot) until /run/unlock exists.
HOLD_LOCK = ("systemd-run --unit=holdlock --quiet python3 -c 'import fcntl, os, time\n"
             "f = open(\"/var/lib/dpkg/lock-frontend\", \"a\")\n"
             "fcntl.lockf(f, fcntl.LOCK_EX)\n"
             "while not os.path.exists(\"/run/unlock\"): time.sleep(0.1)'")


# Stands in for cloud-init: still running until /run/cloud-init-done exists.
CLOUD_INIT = """#!/bin/sh
if [ -e /run/cloud-init-done ]; then echo 'status: done'; exit 0; fi
if [ "$2" = --wait ]; then
    while [ ! -e /run/cloud-init-done ]; do sleep 0.1; done; echo 'status: done'; exit 0
fi
echo 'status: running'
"""


def hold_lock(root):
    root.run("rm -f /run/unlock && " + HOLD_LOCK, hide=True)
    root.run("for i in $(seq 100); do grep -q POSIX /proc/locks && break; sleep 0.1; done", hide=True)


def test_setup_waits_for_the_dpkg_lock_and_streams_apt_progress(sandbox_host, kit, ssh, app_copy):
    host, root = sandbox_host, ssh(sandbox_host, "root")
    root.run(f"cat > /usr/local/bin/cloud-init <<'EOF'\n{CLOUD_INIT}EOF\nchmod 755 /usr/local/bin/cloud-init",
             hide=True)
    hold_lock(root)

    # bounded: a lock that stays held ends setup with one line naming the holder
    app_copy.settings(apt_packages=["tree"], apt_lock_wait=1)
    failed = kit(host, "setup", config=app_copy.config, check=False)
    assert failed.returncode != 0
    assert "waiting for cloud-init to finish (up to 1s)" in failed.stdout
    assert "waiting for the dpkg lock, held by" in failed.stdout
    error = failed.stderr.strip().splitlines()
    assert len(error) == 1 and "the dpkg lock is still held by" in error[0], failed.stderr
    assert "(python3) after 1s" in error[0] and "— fix: " in error[0]
    assert "Traceback" not in failed.stderr
    assert root.run("dpkg-query -W -f='${db:Status-Status}' nginx", hide=True, warn=True).stdout != "installed"

    # while the lock is held, setup says it waits (printed as it happens, not at the end);
    # once the lock goes, apt's own lines follow as apt prints them, then the step summary
    root.run("touch /run/cloud-init-done", hide=True)
    app_copy.settings(apt_packages=["tree"])
    fab = subprocess.Popen(
        [sys.executable, "-m", "fabric", "-f", str(app_copy.config), "-S", host.ssh_config,
         "-H", host.name, "setup"], cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True)
    try:
        seen = []
        for line in fab.stdout:
            seen.append(line)
            if "waiting for the dpkg lock" in line:
                break
        assert fab.poll() is None, "".join(seen)  # still running: the line came live
        root.run("touch /run/unlock", hide=True)
        out, err = fab.communicate(timeout=300)
    finally:
        if fab.poll() is None:
            fab.kill()
    out = "".join(seen) + out
    assert "waiting for cloud-init" not in out
    assert fab.returncode == 0, out + err
    lines = out.splitlines()
    setting_up = next(i for i, l in enumerate(lines) if "apt: Setting up tree" in l)
    summary = next(i for i, l in enumerate(lines) if "packages         changed" in l)
    assert setting_up < summary
    assert "tree" in lines[summary]
    assert root.run("tree --version", hide=True).stdout.startswith("tree ")
    assert "setup done: no change" in kit(host, "setup", config=app_copy.config).stdout
