"""up / down / restart / list_hosts: the sandbox's public operations, in the order that keeps them safe.

Checks come first and raise KitError before anything changes. Names, indexes, the shared NAT
rules and the ssh files are only touched under one file lock, so parallel `up`s (threads or
processes) never collide; the slow parts (boot, wait) run outside it.
"""
import os
import shutil
import sys
import time
from concurrent.futures import ThreadPoolExecutor

from deploy import trust
from deploy.errors import KitError
from deploy.sandbox import image, machine, network, paths, sshfiles, state
from deploy.sandbox.locking import file_lock
from deploy.sandbox.state import SandboxHost

REQUIRED_TOOLS = {
    "systemd-nspawn": "systemd-container",
    "mmdebstrap": "mmdebstrap",
    "zstd": "zstd",
    "iptables": "iptables",
    "ip": "iproute2",
    "ssh": "openssh-client",
    "ssh-keygen": "openssh-client",
}
INSTALL_HINT = ("apt-get install systemd-container mmdebstrap zstd iptables iproute2 "
                "openssh-client (or `make deps`)")
BOOT_TIMEOUT = 90.0


def missing_tools() -> list[str]:
    return [tool for tool in REQUIRED_TOOLS if shutil.which(tool) is None]


def check_machine() -> None:
    """KitError unless this machine can run sandboxes (Linux, root, tools, cgroups)."""
    if not sys.platform.startswith("linux"):
        raise KitError(f"sandbox hosts need Linux (this is {sys.platform})",
                       "run the sandbox on a Debian/Ubuntu machine or VM")
    if os.geteuid() != 0:
        raise KitError("sandbox hosts need root (network namespaces, mounts, nspawn)",
                       "run as root, e.g. `sudo fab sandbox.up`")
    missing = missing_tools()
    if missing:
        raise KitError(f"missing {', '.join(missing)}", INSTALL_HINT)
    if not machine.cgroup_roots():
        raise KitError("no usable cgroup hierarchy under /sys/fs/cgroup",
                       "mount cgroup2 on /sys/fs/cgroup (or the hybrid systemd/unified pair)")


def check_name(name: str) -> None:
    if not machine.valid_name(name):
        raise KitError(f"bad sandbox name {name!r}: it must match ^[a-z][a-z0-9-]{{0,15}}$",
                       "use e.g. --name fs1 or --name web-2")


def list_hosts() -> list[SandboxHost]:
    """Every host that has state (running or not), ordered by index."""
    return [state.host_from_record(r) for r in state.read_records() if r.get("index")]


def host_states() -> list[tuple[SandboxHost, str]]:
    """(host, "running" | "starting" | "stopped") for `fab sandbox.list`."""
    return [(state.host_from_record(r), state.host_state(r))
            for r in state.read_records() if r.get("index")]


def _refresh_ssh_files(records: list[dict]) -> None:
    """Rewrite ssh_config and known_hosts from the records (call with the lock held)."""
    live = [r for r in records if r.get("index") and r.get("hostkey")]
    key, kh = str(paths.key_path()), str(paths.known_hosts_path())
    sshfiles.write_atomic(paths.ssh_config_path(), sshfiles.ssh_config_text(
        [(r["name"], r["index"]) for r in live], state.DEFAULT_USER, key, kh))
    sshfiles.write_atomic(paths.known_hosts_path(), sshfiles.known_hosts_text(
        [(r["name"], r["index"], r["hostkey"]) for r in live]))


def _nat_up_if_first() -> None:
    if not paths.ip_forward_saved().exists():
        paths.ip_forward_saved().write_text(network.read_ip_forward() + "\n")
    network.write_ip_forward("1")
    network.nat_up()
    machine.ensure_inotify_instances()


def _nat_down_if_last() -> None:
    """Remove NAT and restore ip_forward once no sandbox netns is left (from any state dir)."""
    if state.read_records() or network.existing_netns():
        return
    network.nat_down()
    saved = paths.ip_forward_saved()
    if saved.exists():
        network.write_ip_forward(saved.read_text().strip() or "0")
        saved.unlink()


def _prune_images() -> None:
    """Delete unpacked images of older recipes that no host uses (lock held by caller); the
    current recipe of every release stays."""
    used = {r.get("image") for r in state.read_records()}
    used |= {image.cache_key(image.recipe(release)) for release in image.RELEASES}
    base = paths.images_dir()
    for d in base.iterdir() if base.is_dir() else []:
        if d.is_dir() and d.name not in used:
            shutil.rmtree(d, ignore_errors=True)


def _allocate(name: str | None, release: str) -> dict:
    """Pick name and index and create the host dir with its record (lock held by caller)."""
    records = state.read_records()
    # names/indexes whose netns, veth or cgroup exist outside our records (another state dir,
    # a crash) are taken too: we must never adopt, or later delete, what we did not create
    busy_names = {n for n in network.existing_netns()} | machine.existing_cgroup_names()
    taken = {r["name"] for r in records} | busy_names
    if name is None:
        name = machine.next_free_name(taken)
    elif name in taken:
        if name in busy_names and name not in {r["name"] for r in records}:
            raise KitError(f"sandbox host {name} has leftovers from elsewhere (netns "
                           f"{network.netns_name(name)} or cgroup {machine.CGROUP_PREFIX}{name})",
                           f"pick another --name, or remove them by hand (ip netns delete "
                           f"{network.netns_name(name)})")
        raise KitError(f"sandbox host {name} already exists",
                       f"use another --name, or remove it first: fab sandbox.down --name {name}")
    used = {r["index"] for r in records if r.get("index")} | network.existing_veth_indexes()
    index = network.next_free_index(used)
    if index is None:
        raise KitError("all 254 sandbox addresses are in use", "fab sandbox.down")
    paths.host_dir(name).mkdir(parents=True)
    record = {"name": name, "index": index, "pid": None, "ready": False,
              "image": image.cache_key(image.recipe(release)), "release": release,
              "created": time.time()}
    state.write_record(record)
    return record


def up(name: str | None = None, log=lambda msg: None,
       release: str = image.DEFAULT_RELEASE) -> SandboxHost:
    """Start a fresh sandbox host of a Debian release (name None: next free fsN) and wait until
    it is usable."""
    image.check_release(release)
    check_machine()
    if name is not None:
        check_name(name)
        if any(r["name"] == name for r in state.read_records()):
            raise KitError(f"sandbox host {name} already exists",
                           f"use another --name, or remove it first: fab sandbox.down --name {name}")
    paths.state_dir().mkdir(parents=True, exist_ok=True)
    lower = image.ensure_rootfs(log, release)
    with file_lock(paths.lock_file()):
        sshfiles.ensure_key()
        record = _allocate(name, release)
        _nat_up_if_first()
        _prune_images()
    name, index = record["name"], record["index"]
    host = state.host_from_record(record)
    try:
        for argv in network.setup_argvs(name, index):
            network.run(argv)
        record["hostkey"] = machine.prepare_root(name, lower, host.user, sshfiles.public_key())
        record["pid"] = machine.launch(name)
        state.write_record(record)
        with file_lock(paths.lock_file()):
            _refresh_ssh_files(state.read_records())
        deadline = time.monotonic() + BOOT_TIMEOUT
        machine.wait_ssh_port(name, host.address, record["pid"], BOOT_TIMEOUT)
        machine.wait_system_running(name, host.ssh_config, deadline - time.monotonic())
        record["ready"] = True
        state.write_record(record)
    except BaseException as e:
        logfile = machine.log_path(name)
        kept = logfile.with_name(f"{name}.failed.log")
        if logfile.exists():
            os.replace(logfile, kept)
        _remove(record)
        if isinstance(e, KeyboardInterrupt):
            raise
        raise KitError(f"sandbox host {name} failed to start: {e}",
                       f"read {kept} (nspawn/boot output)") from e
    # the user's own known_hosts may still hold an earlier host's key for this address/name
    for note in trust.stale_notes(host.address, host.name, record["hostkey"]):
        log(note)
    return host


def restart(name: str) -> SandboxHost:
    """Boot a host again on the same root, address and keys once its system has stopped: a
    `systemctl reboot` inside makes nspawn exit (a host still running is powered off first)."""
    check_machine()
    record = next((r for r in state.read_records() if r["name"] == name and r.get("index")), None)
    if record is None:
        raise KitError(f"no sandbox host named {name}", "fab sandbox.list")
    machine.stop(name, record.get("pid"))
    host = state.host_from_record(record)
    record["pid"], record["ready"] = machine.launch(name), False
    state.write_record(record)
    deadline = time.monotonic() + BOOT_TIMEOUT
    try:
        machine.wait_ssh_port(name, host.address, record["pid"], BOOT_TIMEOUT)
        machine.wait_system_running(name, host.ssh_config, deadline - time.monotonic())
    except RuntimeError as e:
        raise KitError(f"sandbox host {name} did not come back: {e}",
                       f"read {machine.log_path(name)}, or remove it: fab sandbox.down --name {name}") from e
    record["ready"] = True
    state.write_record(record)
    return host


def _remove(record: dict) -> None:
    problems = machine.destroy(record["name"], record.get("index"), record.get("pid"))
    with file_lock(paths.lock_file()):
        if problems:
            raise KitError(f"could not fully remove sandbox host {record['name']}: "
                           f"{', '.join(problems)} left", "retry `fab sandbox.down`, or reboot")
        _refresh_ssh_files(state.read_records())
        _nat_down_if_last()
    log = machine.log_path(record["name"])
    log.unlink(missing_ok=True)


def down(name: str | None = None) -> list[str]:
    """Stop and remove one host (or all when name is None); return the names removed."""
    check_machine()
    records = state.read_records()
    if name is not None:
        records = [r for r in records if r["name"] == name]
        if not records:
            known = ", ".join(r["name"] for r in state.read_records()) or "none"
            raise KitError(f"no sandbox host named {name} (existing: {known})", "fab sandbox.list")
    if not records:
        return []
    with ThreadPoolExecutor(max_workers=min(8, len(records))) as pool:
        results = list(pool.map(_try_remove, records))
    errors = [e for e in results if e]
    if errors:
        raise KitError("; ".join(errors))
    return [r["name"] for r in records]


def _try_remove(record: dict) -> str | None:
    try:
        _remove(record)
    except KitError as e:
        return str(e)
    return None
