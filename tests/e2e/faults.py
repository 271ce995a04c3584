"""Faults for the fault suite (test_faults.py), injected from the machine running the tests.

- `ssh_cut(host)`: every packet to and from the host's port 22 is dropped (not refused) inside
  its network namespace, so an open SSH connection goes half-open, as in a network partition.
- `Holds`: deterministic pause points in a deploy. The deployed app's `/healthz` answers 503
  while a hold file exists on the host — in the preflight (the end of prepare) or in the
  service (the switch's health gate through nginx); `/` keeps answering. The finish step is
  held by making the deploy log a FIFO: the line the finish appends blocks until read.
- `disk_full(host, path)`: a small tmpfs mounted over `path` inside the host's mount
  namespace, holding a copy of what was there and then filled up.
- `reboot(host)`: `systemctl reboot` inside the host; nspawn exits and the host is started
  again on the same root.
"""
from __future__ import annotations

import subprocess
from contextlib import contextmanager

from conftest import wait_for  # noqa: F401  (re-exported for the fault tests)
from deploy.sandbox import network

APP = "flasksample"
ROOT = f"/srv/{APP}"
HOLD_DIR = "/etc/kit-fault-hold"  # readable by the app in the preflight and under the unit's sandbox


def sh(argv: list[str], check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, check=check)


# -- network -------------------------------------------------------------------------------------

SSH_DROP_RULES = (["INPUT", "-p", "tcp", "--dport", "22", "-j", "DROP"],
                  ["OUTPUT", "-p", "tcp", "--sport", "22", "-j", "DROP"])


def _iptables(host, op: str, rule: list[str]) -> None:
    sh(["ip", "netns", "exec", network.netns_name(host.name), "iptables", "-w", op, *rule])


@contextmanager
def ssh_cut(host):
    """Drop port 22's packets both ways while the block runs (HTTP on port 80 is untouched)."""
    for rule in SSH_DROP_RULES:
        _iptables(host, "-I", rule)
    try:
        yield
    finally:
        for rule in SSH_DROP_RULES:
            _iptables(host, "-D", rule)


def ssh_sessions(host) -> int:
    """Established TCP connections to the host's sshd (port 22 = 0x0016), as its kernel sees them."""
    out = nsenter(host, "awk '$2 ~ /:0016$/ && $4 == \"01\"' /proc/net/tcp /proc/net/tcp6 | wc -l")
    return int(out.stdout.strip())


# -- pause points in a deploy ----------------------------------------------------------------------

HEALTH_HOOK = (
    "        import os, sys\n"
    "        where = 'preflight' if any('preflight' in a for a in sys.argv) else 'service'\n"
    f"        if os.path.exists({HOLD_DIR!r} + '/' + where):\n"
    "            return 'held by the fault suite', 503\n"
    "        return jsonify(")


def add_health_hook(app_copy) -> None:
    """Ship an app whose /healthz waits (503) while a hold file for its role exists."""
    if HOLD_DIR not in (app_copy.dir / "serve.py").read_text():
        app_copy.patch("        return jsonify(", HEALTH_HOOK)


class Holds:
    """Hold files on one host, written from this machine (they work while its SSH is cut)."""

    def __init__(self, host):
        self.host = host

    def hold(self, where: str) -> None:
        nsenter(self.host, f"install -d -m 755 {HOLD_DIR} && touch {HOLD_DIR}/{where}")

    def clear(self) -> None:
        nsenter(self.host, f"rm -rf {HOLD_DIR}")
        self.unhold_finish()

    # finish: `deploys.log` becomes a FIFO; the finish blocks opening it until someone reads
    def hold_finish(self) -> None:
        log = f"{ROOT}/.kit/deploys.log"
        nsenter(self.host, f"[ -p {log} ] || {{ mv {log} {log}.kept 2>/dev/null || touch {log}.kept; "
                           f"mkfifo -m 600 {log}; }}")

    def finish_waiting(self) -> bool:
        """A process is blocked opening the deploy-log FIFO, i.e. the finish step has begun."""
        out = nsenter(self.host, "grep -lx wait_for_partner /proc/[0-9]*/wchan 2>/dev/null || true")
        return bool(out.stdout.strip())

    def unhold_finish(self) -> None:
        log = f"{ROOT}/.kit/deploys.log"
        # read what a blocked writer appends (there may be none: timeout), then put the file back
        nsenter(self.host, f"if [ -p {log} ]; then timeout 5 cat {log} >> {log}.kept || true; "
                           f"rm -f {log}; mv {log}.kept {log}; fi")


# -- host state ------------------------------------------------------------------------------------

def container_pid(host) -> int:
    """PID (on this machine) of the host's systemd, PID 1 inside it."""
    from deploy.sandbox import state

    record = next(r for r in state.read_records() if r["name"] == host.name)
    children = sh(["pgrep", "-P", str(record["pid"])]).stdout.split()
    return int(children[0])


def nsenter(host, command: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run a shell command in the host's mount namespace (as its root), from this machine."""
    return sh(["nsenter", "-t", str(container_pid(host)), "-m", "-u", "-i", "-n", "-p",
               "sh", "-c", command], check=check)


@contextmanager
def disk_full(host, path: str, spare_kib: int = 0):
    """A tmpfs over `path` with a copy of its content and only `spare_kib` KiB left free."""
    stage = f"/run/kit-fault-{path.strip('/').replace('/', '-')}"
    used_kib = int(nsenter(host, f"du -sk {path} | cut -f1").stdout.split()[0])
    size_kib = used_kib + used_kib // 4 + 4096  # tmpfs counts blocks and inodes differently from du
    nsenter(host, f"mkdir -p {stage} && mount -t tmpfs -o size={size_kib}k,mode=755 kitfault {stage} "
                  f"&& cp -a {path}/. {stage}/ && mount --bind {stage} {path} && umount -l {stage}")
    free = int(nsenter(host, f"df -k --output=avail {path} | tail -n 1").stdout.strip())
    if free > spare_kib:  # fallocate takes every block, as a growing log file would
        nsenter(host, f"fallocate -l {(free - spare_kib) * 1024} {path}/.kit-fault-filler")
    try:
        yield
    finally:
        nsenter(host, f"umount -l {path}", check=False)


def reboot(host) -> None:
    """`systemctl reboot` inside the host; once nspawn has exited, boot it again (same root)."""
    from deploy.sandbox import restart, state
    from deploy.sandbox.state import pid_alive

    pid = next(r for r in state.read_records() if r["name"] == host.name)["pid"]
    nsenter(host, "systemctl reboot")
    wait_for("the host's system to stop", lambda: not pid_alive(pid), timeout=60, every=0.1)
    restart(host.name)


def releases(host) -> list[str]:
    return nsenter(host, f"ls -1 {ROOT}/releases").stdout.split()


def current_release(host) -> str:
    """The release `current` resolves to, checked complete: its code, REVISION and finished venv."""
    out = nsenter(host, f"set -e; r=$(readlink -e {ROOT}/current); test -f $r/REVISION; "
                        f"test -f $r/serve.py; test -e $(readlink -e $r/.venv)/.complete; basename $r",
                  check=False)
    assert out.returncode == 0, f"current does not resolve to a complete release: {out.stdout}{out.stderr}"
    return out.stdout.strip()


def lock_state(host) -> str:
    return nsenter(host, f"cat {ROOT}/.kit/lock/holder 2>/dev/null || echo unlocked").stdout.strip()
