"""What the kit remembers about each host: SandboxHost (the public view) and its host.json record."""
import json
import os
from dataclasses import dataclass
from pathlib import Path

from deploy.sandbox import image, network, paths

DEFAULT_USER = "deploy"


@dataclass(frozen=True)
class SandboxHost:
    """A running sandbox host, as the rest of the kit and the tests see it."""

    name: str  # e.g. "fs1"
    index: int  # N in 10.231.N.2
    address: str  # "10.231.N.2"
    user: str  # "deploy"
    key_path: str  # private ed25519 key shared by all sandbox hosts, mode 0600
    ssh_config: str  # ssh_config file with a `Host <name>` block per running host
    known_hosts: str  # the sandbox known_hosts file
    release: str = image.DEFAULT_RELEASE  # the Debian release it runs (image.RELEASES)


def host_from_record(record: dict) -> SandboxHost:
    return SandboxHost(
        name=record["name"],
        index=record["index"],
        address=network.address(record["index"]),
        user=DEFAULT_USER,
        key_path=str(paths.key_path()),
        ssh_config=str(paths.ssh_config_path()),
        known_hosts=str(paths.known_hosts_path()),
        release=record.get("release", image.DEFAULT_RELEASE),
    )


def record_path(name: str) -> Path:
    return paths.host_dir(name) / "host.json"


def write_record(record: dict) -> None:
    """Write host.json atomically (readers never see half a file)."""
    path = record_path(record["name"])
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, path)


def read_records() -> list[dict]:
    """Every host record under the state dir, sorted by index. A host dir without a record
    (a crash between mkdir and write) shows up as {"name": …, "index": None}."""
    records = []
    base = paths.hosts_dir()
    if not base.is_dir():
        return []
    for entry in sorted(base.iterdir()):
        if not entry.is_dir():
            continue
        try:
            records.append(json.loads((entry / "host.json").read_text()))
        except (OSError, ValueError):
            records.append({"name": entry.name, "index": None})
    return sorted(records, key=lambda r: (r.get("index") or 0, r["name"]))


def pid_alive(pid: int | None) -> bool:
    """True when `pid` runs and is not a zombie."""
    if not pid:
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def host_state(record: dict) -> str:
    """"running" (booted and answered), "starting", or "stopped" (nspawn gone)."""
    if not pid_alive(record.get("pid")):
        return "stopped"
    return "running" if record.get("ready") else "starting"
