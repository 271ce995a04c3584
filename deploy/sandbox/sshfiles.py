"""The sandbox's SSH side on the machine: the shared key, ssh_config and known_hosts.

ssh_config and known_hosts are regenerated from the running hosts' records every time a host
comes or goes, so stale entries (an address re-used with a new host key) never survive.
"""
import os
import subprocess
from pathlib import Path

from deploy.sandbox import network, paths


def ssh_config_block(name: str, address: str, user: str, key: str, known_hosts: str) -> str:
    """One `Host` block: strict host key checking against the sandbox's own known_hosts."""
    return (
        f"Host {name}\n"
        f"    HostName {address}\n"
        f"    User {user}\n"
        f"    IdentityFile {key}\n"
        f"    IdentitiesOnly yes\n"
        f"    UserKnownHostsFile {known_hosts}\n"
        f"    StrictHostKeyChecking yes\n"
    )


def ssh_config_text(hosts: list[tuple[str, int]], user: str, key: str, known_hosts: str) -> str:
    """The whole ssh_config for (name, index) pairs."""
    header = "# Written by flasksample's sandbox (fab sandbox.up/down); regenerated on every change.\n"
    blocks = [ssh_config_block(n, network.address(i), user, key, known_hosts) for n, i in hosts]
    return header + "\n".join(blocks)


def known_hosts_text(entries: list[tuple[str, int, str]]) -> str:
    """known_hosts lines for (name, index, "ssh-ed25519 AAAA…") triples: by address and by name."""
    lines = []
    for name, index, pubkey in entries:
        key = " ".join(pubkey.split()[:2])
        lines.append(f"{network.address(index)} {key}")
        lines.append(f"{name} {key}")
    return "".join(line + "\n" for line in lines)


def write_atomic(path: Path, text: str, mode: int = 0o644) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(text)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def ensure_key() -> Path:
    """Create the shared ed25519 key pair once (mode 0600); return the private key's path."""
    key = paths.key_path()
    if not key.exists():
        key.parent.mkdir(parents=True, exist_ok=True)
        for stale in (key, key.with_suffix(".pub")):
            stale.unlink(missing_ok=True)
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "flasksample-sandbox",
                        "-f", str(key)], check=True, capture_output=True)
    os.chmod(key, 0o600)
    return key


def public_key() -> str:
    return paths.key_path().with_suffix(".pub").read_text().strip()
