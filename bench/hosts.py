"""Sandbox hosts for the benchmark: start/stop them, run root commands, run the real `fab` CLI.

Root commands go over one OpenSSH ControlMaster connection per host (~7 ms a command), so an
event like `systemctl restart` is timed as an operator on the host would see it, not plus an
SSH handshake. `fab` is always the real CLI in a subprocess: its start-up, connection and
packing are part of what a deploy costs.
"""
from __future__ import annotations

import re
import resource
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
FAB = [sys.executable, "-m", "fabric"]
KIT_PATHS = ["fabfile.py", "deploy", "app", "nginx", "supervisor", "systemd", "pyproject.toml"]
KIT = REPO  # where `fab` runs (its fabfile, deploy/, templates, app/); see snapshot_kit()


def snapshot_kit(dest: Path) -> tuple[str, bool]:
    """Extract the kit as committed at HEAD into dest and run `fab` from there for the whole run.

    Other work commits to this checkout while the bench runs; a snapshot keeps every row
    measuring one kit. Returns (short commit id, whether the working tree differed from it).
    """
    global KIT
    dirty = bool(subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--", *KIT_PATHS],
                                capture_output=True, text=True).stdout.strip())
    rev = extract_kit("HEAD", dest)
    KIT = dest
    return rev, dirty


def extract_kit(rev: str, dest: Path) -> str:
    """The kit as committed at `rev` (any git revision) extracted into dest; its short id."""
    short = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", rev],
                           capture_output=True, text=True, check=True).stdout.strip()
    dest.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(["git", "-C", str(REPO), "archive", "--format=tar", short, "--", *KIT_PATHS],
                             capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    # Compiled as pip compiles an installed kit: users never run fab from bare sources, and runs
    # with PYTHONDONTWRITEBYTECODE (as here) would otherwise compile every module on each start.
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(dest)], check=True)
    return short


@dataclass
class FabRun:
    rc: int
    wall: float
    out: str
    cpu: float = 0.0  # user + system CPU seconds of the local `fab` process

    def steps(self) -> dict[str, float]:
        """`lock 0.00s, unpack 0.01s, …` lines → {step: seconds} (summed across hosts/lines)."""
        found: dict[str, float] = {}
        for m in re.finditer(r"\b([a-z]+) (\d+\.\d+)s\b", "\n".join(
                l for l in self.out.splitlines() if re.search(r"\]\s+[a-z]+ \d+\.\d+s,", l))):
            found[m.group(1)] = max(found.get(m.group(1), 0.0), float(m.group(2)))
        return found

    def live_total(self) -> float | None:
        """The deploy's own total, `release … is live: … (0.95s)`."""
        m = re.findall(r"is live: \S+ \((\d+\.\d+)s\)", self.out)
        return max(map(float, m)) if m else None


class Host:
    def __init__(self, sandbox_host, control_dir: str):
        self.sh = sandbox_host
        self.name, self.address, self.ssh_config = sandbox_host.name, sandbox_host.address, sandbox_host.ssh_config
        self.control = f"{control_dir}/{self.name}"

    def _ssh(self) -> list[str]:
        return ["ssh", "-F", self.ssh_config, "-o", "ControlMaster=auto", "-o", f"ControlPath={self.control}",
                "-o", "ControlPersist=600", "-o", "BatchMode=yes", f"root@{self.name}"]

    def root(self, cmd: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
        p = subprocess.run(self._ssh() + [cmd], capture_output=True, text=True, timeout=timeout)
        if check and p.returncode != 0:
            raise RuntimeError(f"{self.name}: `{cmd}` exited {p.returncode}: {p.stderr.strip()} {p.stdout.strip()}")
        return p

    def close(self) -> None:
        subprocess.run(["ssh", "-F", self.ssh_config, "-o", f"ControlPath={self.control}", "-O", "exit",
                        f"root@{self.name}"], capture_output=True, timeout=10)

    # CPU time (cgroup v2 `usage_usec`) of the parts of a host a deploy makes work.
    CGROUPS = {"gunicorn (reload, hand-over; the app's unit or supervisord)":
               ["system.slice/flasksample.service", "system.slice/supervisor.service"],
               "ssh sessions (sshd, the kit's scripts, curl)": ["user.slice", "system.slice/ssh.service"],
               # also the preflight boot (a transient unit), nginx, journald
               "whole host": ["init.scope", "system.slice", "user.slice"]}

    def cpu(self) -> dict[str, float]:
        """Seconds of CPU each part of the host has used so far (see CGROUPS)."""
        paths = sorted({p for ps in self.CGROUPS.values() for p in ps})
        out = self.root("for p in " + " ".join(paths) + "; do printf '%s ' \"$p\"; "
                        "cat /sys/fs/cgroup/unified/$p/cpu.stat /sys/fs/cgroup/$p/cpu.stat 2>/dev/null | "
                        "awk '/^usage_usec/ {print $2; f=1; exit} END {if (!f) print 0}'; done",
                        check=False).stdout
        used = {}
        for line in out.splitlines():
            name, _, usec = line.partition(" ")
            used[name] = int(usec.strip() or 0) / 1e6
        return {part: sum(used.get(p, 0.0) for p in ps) for part, ps in self.CGROUPS.items()}

    def wait_http(self, contains: str = "", timeout: float = 30) -> None:
        """Until nginx answers 200 on / (with `contains` in the body), as seen from the host."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            p = self.root("curl -sf -m 2 http://127.0.0.1/", check=False)
            if p.returncode == 0 and contains in p.stdout:
                return
            time.sleep(0.1)
        raise RuntimeError(f"{self.name}: / did not answer {contains!r} within {timeout}s")


def fab(hosts: list[Host], *task: str, config: str | None = None, timeout: float = 300,
        kit: Path | None = None) -> FabRun:
    """The real `fab` CLI run from the kit snapshot (or `kit`, another extracted revision)."""
    argv = FAB + ["-S", hosts[0].ssh_config, "-H", ",".join(h.name for h in hosts)]
    if config:
        argv += ["-f", config]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.monotonic()
    p = subprocess.run(argv + list(task), cwd=kit or KIT, capture_output=True, text=True, timeout=timeout)
    wall = time.monotonic() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return FabRun(p.returncode, wall, p.stdout + p.stderr, cpu)


def start(names: list[str], log) -> list:
    from deploy.sandbox import up
    with ThreadPoolExecutor(max_workers=len(names)) as pool:
        futures = [pool.submit(up, n) for n in names]
    errors = [f.exception() for f in futures if f.exception()]
    if errors:
        stop(names, log)
        raise errors[0]
    return [f.result() for f in futures]


def stop(names: list[str], log) -> None:
    from deploy.sandbox import down, list_hosts
    existing = {h.name for h in list_hosts()}
    for n in names:
        if n in existing:
            try:
                down(n)
            except Exception as e:  # keep removing the others
                log(f"could not remove sandbox host {n}: {e}")


def control_dir() -> str:
    return tempfile.mkdtemp(prefix="bench-ssh-")
