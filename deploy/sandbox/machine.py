"""One host's machine: its overlay root, the files that make it unique, and its nspawn process.

prepare_root() mounts the overlay and writes machine-id, hostname, /etc/hosts, ssh host key,
sshd drop-in, authorized keys and sudoers; launch() starts systemd-nspawn detached, in its own
cgroup; wait_ready() waits for sshd and `systemctl is-system-running --wait`; destroy() stops it
and removes every trace (processes, cgroups, mount, netns, lock files, host dir), whatever state
it was left in. File contents and argv are built by pure functions.
"""
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import uuid
from pathlib import Path

from deploy.sandbox import network, paths
from deploy.sandbox.state import pid_alive

NAME_RE = re.compile(r"[a-z][a-z0-9-]{0,15}")
CGROUP_PREFIX = "flasksample-sandbox-"
SSHD_DROPIN = "/etc/ssh/sshd_config.d/10-flasksample-sandbox.conf"
NSPAWN_LOCKS = ("/var/lib/machines/.#{name}.lck", "/run/systemd/nspawn/propagate/{name}",
                "/run/systemd/nspawn/unix-export/{name}")

# Popen objects of hosts launched by this process, so their exit status gets reaped.
_children: dict[str, subprocess.Popen] = {}


def valid_name(name: str) -> bool:
    return bool(NAME_RE.fullmatch(name))


def next_free_name(taken: set[str], prefix: str = "fs") -> str:
    """`fs1`, `fs2`, …: the first one not in `taken`."""
    k = 1
    while f"{prefix}{k}" in taken:
        k += 1
    return f"{prefix}{k}"


# ---- file contents -------------------------------------------------------------------------

def hosts_file(name: str) -> str:
    return (
        "127.0.0.1\tlocalhost\n"
        f"127.0.1.1\t{name}\n"
        "::1\tlocalhost ip6-localhost ip6-loopback\n"
        "ff02::1\tip6-allnodes\n"
        "ff02::2\tip6-allrouters\n"
    )


def sshd_dropin() -> str:
    """Keys only, root by key only, one host key (generated per host)."""
    return (
        "# flasksample sandbox: like a fresh cloud VM\n"
        "HostKey /etc/ssh/ssh_host_ed25519_key\n"
        "PasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\n"
        "PermitRootLogin prohibit-password\n"
        "PubkeyAuthentication yes\n"
    )


def sudoers(user: str) -> str:
    return f"{user} ALL=(ALL:ALL) NOPASSWD: ALL\n"


def new_machine_id() -> str:
    """32 lowercase hex digits, like `systemd-id128 new`."""
    return uuid.uuid4().hex


# ---- argv ----------------------------------------------------------------------------------

def overlay_mount_argv(lower: str, upper: str, work: str, merged: str) -> list[str]:
    return ["mount", "-t", "overlay", "overlay", "-o",
            f"lowerdir={lower},upperdir={upper},workdir={work}", merged]


def cgroup_roots() -> list[Path]:
    """The cgroup hierarchies a host's processes must be moved in: the named `systemd` v1 one and
    the v2 one on hybrid machines, or just /sys/fs/cgroup on a pure v2 machine."""
    base = Path("/sys/fs/cgroup")
    hybrid = [base / "systemd", base / "unified"]
    roots = [p for p in hybrid if (p / "cgroup.procs").exists()]
    if roots:
        return roots
    return [base] if (base / "cgroup.controllers").exists() else []


def cgroup_dirs(name: str, roots: list[Path]) -> list[Path]:
    return [root / f"{CGROUP_PREFIX}{name}" for root in roots]


def existing_cgroup_names() -> set[str]:
    """Names of every host cgroup (ours or left over) in the machine's hierarchies."""
    names = set()
    for root in cgroup_roots():
        names |= {p.name[len(CGROUP_PREFIX):] for p in root.glob(CGROUP_PREFIX + "*")}
    return names


def nspawn_argv(name: str, root: str) -> list[str]:
    return [
        "systemd-nspawn", "--boot", f"--directory={root}", f"--machine={name}",
        "--register=no", "--keep-unit", "--link-journal=no",
        f"--network-namespace-path=/run/netns/{network.netns_name(name)}",
        "--resolv-conf=copy-host", "--console=read-only",
    ]


def launch_argv(cgroup_procs: list[str], command: list[str]) -> list[str]:
    """A tiny shell that moves itself into each given cgroup, then execs `command`
    (done in the child, not with preexec_fn, which is unsafe in threaded callers)."""
    script = 'for f in "$@"; do [ "$f" = -- ] && break; echo $$ > "$f" || exit 1; shift; done; shift; exec "$@"'
    return ["sh", "-c", script, "sh", *cgroup_procs, "--", *command]


# ---- actions -------------------------------------------------------------------------------

def _write(path: Path, text: str, mode: int = 0o644, owner: tuple[int, int] = (0, 0)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_symlink():
        path.unlink()
    path.write_text(text)
    os.chmod(path, mode)
    os.chown(path, *owner)


def _user_ids(root: Path, user: str) -> tuple[int, int, str]:
    for line in (root / "etc/passwd").read_text().splitlines():
        fields = line.split(":")
        if fields[0] == user:
            return int(fields[2]), int(fields[3]), fields[5]
    raise RuntimeError(f"user {user} missing from the image")


LOCAL_CA_DIR = Path("/usr/local/share/ca-certificates")


def trust_local_cas(root: Path) -> None:
    """Give the host the CAs this machine added locally (e.g. a TLS-inspecting proxy's),
    so apt and pip inside reach the registries exactly as this machine does."""
    certs = sorted(LOCAL_CA_DIR.glob("*.crt")) if LOCAL_CA_DIR.is_dir() else []
    if not certs:
        return
    bundle = root / "etc/ssl/certs/ca-certificates.crt"
    extra = "".join(c.read_text() for c in certs)
    for cert in certs:
        _write(root / "usr/local/share/ca-certificates" / cert.name, cert.read_text())
    if bundle.is_file():
        _write(bundle, bundle.read_text() + extra)


def prepare_root(name: str, lower: Path, user: str, authorized_key: str) -> str:
    """Mount the host's overlay and make it unique; return its ssh host public key line."""
    hdir = paths.host_dir(name)
    upper, work, merged = hdir / "upper", hdir / "work", hdir / "merged"
    for d in (upper, work, merged):
        d.mkdir(parents=True, exist_ok=True)
    network.run(overlay_mount_argv(str(lower), str(upper), str(work), str(merged)))
    root = merged
    _write(root / "etc/machine-id", new_machine_id() + "\n", 0o444)
    dbus_id = root / "var/lib/dbus/machine-id"
    dbus_id.parent.mkdir(parents=True, exist_ok=True)
    if dbus_id.exists() or dbus_id.is_symlink():
        dbus_id.unlink()
    dbus_id.symlink_to("/etc/machine-id")
    _write(root / "etc/hostname", name + "\n")
    _write(root / "etc/hosts", hosts_file(name))
    _write(root / SSHD_DROPIN.lstrip("/"), sshd_dropin())
    _write(root / f"etc/sudoers.d/{user}", sudoers(user), 0o440)
    trust_local_cas(root)
    hostkey = root / "etc/ssh/ssh_host_ed25519_key"
    for f in (hostkey, hostkey.with_suffix(".pub")):
        f.unlink(missing_ok=True)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"root@{name}",
                    "-f", str(hostkey)], check=True, capture_output=True)
    uid, gid, home = _user_ids(root, user)
    for owner, home_dir in (((0, 0), "/root"), ((uid, gid), home)):
        ssh_dir = root / home_dir.lstrip("/") / ".ssh"
        ssh_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(ssh_dir, 0o700)
        os.chown(ssh_dir, *owner)
        _write(ssh_dir / "authorized_keys", authorized_key + "\n", 0o600, owner)
    return hostkey.with_suffix(".pub").read_text().strip()


INOTIFY_INSTANCES = "/proc/sys/fs/inotify/max_user_instances"
# Every host's systemd, journald, udev and logind take inotify instances, all counted against
# root on this machine; Debian's default of 128 runs out at ~15 hosts ("Too many open files").
INOTIFY_INSTANCES_WANTED = 1024


def inotify_instances_needed(current: int) -> int | None:
    """The value to raise max_user_instances to, or None when it is already high enough
    (never lowered: other software on the machine may rely on a higher one)."""
    return INOTIFY_INSTANCES_WANTED if current < INOTIFY_INSTANCES_WANTED else None


def ensure_inotify_instances() -> None:
    try:
        with open(INOTIFY_INSTANCES) as f:
            wanted = inotify_instances_needed(int(f.read().strip()))
        if wanted is not None:
            with open(INOTIFY_INSTANCES, "w") as f:
                f.write(f"{wanted}\n")
    except (OSError, ValueError):
        pass  # a read-only /proc/sys (nested container): hosts still start, fewer at once


def log_path(name: str) -> Path:
    return paths.state_dir() / "logs" / f"{name}.log"


def launch(name: str) -> int:
    """Start nspawn detached (own session, own cgroup, output to the log file); return its pid."""
    roots = cgroup_roots()
    procs = []
    for d in cgroup_dirs(name, roots):
        d.mkdir(exist_ok=True)
        procs.append(str(d / "cgroup.procs"))
    log = log_path(name)
    log.parent.mkdir(parents=True, exist_ok=True)
    merged = paths.host_dir(name) / "merged"
    with open(log, "wb") as out:
        proc = subprocess.Popen(launch_argv(procs, nspawn_argv(name, str(merged))),
                                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True, close_fds=True)
    _children[name] = proc
    return proc.pid


def _reap(name: str) -> None:
    proc = _children.get(name)
    if proc is not None and proc.poll() is not None:
        _children.pop(name, None)


def alive(name: str, pid: int) -> bool:
    _reap(name)
    return pid_alive(pid)


def wait_ssh_port(name: str, address: str, pid: int, timeout: float) -> None:
    """Wait until sshd at address:22 sends its banner; RuntimeError if nspawn dies or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive(name, pid):
            raise RuntimeError("systemd-nspawn exited during boot")
        try:
            with socket.create_connection((address, 22), timeout=1) as s:
                s.settimeout(2)
                if s.recv(4).startswith(b"SSH-"):
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"sshd on {address}:22 did not answer within {timeout:.0f}s")


def ssh_argv(ssh_config: str, name: str, command: str, user: str | None = None) -> list[str]:
    argv = ["ssh", "-F", ssh_config, "-o", "BatchMode=yes", "-o", "ConnectTimeout=5"]
    if user:
        argv += ["-l", user]
    return argv + [name, command]


def wait_system_running(name: str, ssh_config: str, timeout: float) -> None:
    """Run `systemctl is-system-running --wait` over ssh; anything but `running` is an error."""
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        try:
            result = subprocess.run(
                ssh_argv(ssh_config, name, "systemctl is-system-running --wait"),
                capture_output=True, text=True, timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            break
        state = result.stdout.strip()
        if state == "running":
            return
        if result.returncode == 255:  # ssh itself failed: retry shortly
            last = result.stderr.strip().splitlines()[-1:] or [""]
            last = last[0]
            time.sleep(0.3)
            continue
        raise RuntimeError(f"system state is {state or result.stderr.strip()!r} "
                           f"(see `ssh -F {ssh_config} {name} systemctl --failed`)")
    raise RuntimeError(f"system did not reach `running` within {timeout:.0f}s {last}".strip())


def _cgroup_pids(d: Path) -> set[int]:
    pids = set()
    for procs in d.rglob("cgroup.procs"):
        try:
            pids.update(int(p) for p in procs.read_text().split())
        except OSError:
            pass
    return pids


def _remove_cgroup_tree(d: Path) -> None:
    if not d.is_dir():
        return
    for sub in sorted((p for p in d.rglob("*") if p.is_dir()), key=lambda p: len(p.parts),
                      reverse=True):
        try:
            sub.rmdir()
        except OSError:
            pass
    try:
        d.rmdir()
    except OSError:
        pass


def _is_mounted(path: Path) -> bool:
    target = str(path)
    with open("/proc/self/mounts") as f:
        return any(line.split()[1] == target for line in f)


def stop(name: str, pid: int | None, timeout: float = 15.0) -> None:
    """SIGTERM nspawn (a clean poweroff), SIGKILL after `timeout`."""
    if not pid or not alive(name, pid):
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and alive(name, pid):
        time.sleep(0.1)
    if alive(name, pid):
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and alive(name, pid):
            time.sleep(0.1)


def destroy(name: str, index: int | None, pid: int | None) -> list[str]:
    """Stop the host and remove every trace of it; return what could not be removed."""
    problems = []
    stop(name, pid)
    dirs = cgroup_dirs(name, cgroup_roots())
    deadline = time.monotonic() + 5
    while True:  # leftovers of a killed nspawn keep running in the host's cgroup
        pids = set().union(*(_cgroup_pids(d) for d in dirs if d.is_dir())) if dirs else set()
        if not pids or time.monotonic() > deadline:
            break
        for p in pids:
            try:
                os.kill(p, signal.SIGKILL)
            except OSError:
                pass
        time.sleep(0.1)
    for d in dirs:
        _remove_cgroup_tree(d)
        if d.exists():
            problems.append(f"cgroup {d}")
    hdir = paths.host_dir(name)
    merged = hdir / "merged"
    for attempt in range(20):
        if not _is_mounted(merged):
            break
        flag = ["-l"] if attempt == 19 else []
        subprocess.run(["umount", *flag, str(merged)], capture_output=True)
        if _is_mounted(merged):
            time.sleep(0.1)
    if _is_mounted(merged):
        problems.append(f"mount {merged}")
    if index:
        for argv in network.teardown_argvs(name, index):
            network.run(argv, check=False)
    if os.path.exists(f"/run/netns/{network.netns_name(name)}"):
        problems.append(f"netns {network.netns_name(name)}")
    for pattern in NSPAWN_LOCKS:
        p = Path(pattern.format(name=name))
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
    if not problems:
        shutil.rmtree(hdir, ignore_errors=True)
    _children.pop(name, None)
    return problems
