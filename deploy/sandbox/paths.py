"""Where sandbox state lives on the machine: one state dir (hosts, key, ssh files) and one image cache.

`FLASKSAMPLE_SANDBOX_DIR` (default /var/lib/flasksample/sandbox) holds everything that belongs to
running hosts; `FLASKSAMPLE_IMAGE_CACHE` (default /var/cache/flasksample) holds the base image
tarball, which outlives git clones. Nothing here touches the filesystem.
"""
import os
from pathlib import Path

DEFAULT_STATE_DIR = "/var/lib/flasksample/sandbox"
DEFAULT_IMAGE_CACHE = "/var/cache/flasksample"


def state_dir() -> Path:
    """The sandbox state dir (env FLASKSAMPLE_SANDBOX_DIR)."""
    return Path(os.environ.get("FLASKSAMPLE_SANDBOX_DIR") or DEFAULT_STATE_DIR)


def image_cache_dir() -> Path:
    """Where base image tarballs are cached (env FLASKSAMPLE_IMAGE_CACHE)."""
    return Path(os.environ.get("FLASKSAMPLE_IMAGE_CACHE") or DEFAULT_IMAGE_CACHE)


def hosts_dir() -> Path:
    """One subdirectory per host: host.json, upper/, work/, merged/, nspawn.log."""
    return state_dir() / "hosts"


def host_dir(name: str) -> Path:
    return hosts_dir() / name


def images_dir() -> Path:
    """Unpacked base images (the shared overlay lower dirs), one per cache key."""
    return state_dir() / "images"


def lock_file() -> Path:
    """Held while allocating names/indexes and while rewriting shared files (ssh_config, NAT)."""
    return state_dir() / ".lock"


def key_path() -> Path:
    """The private ed25519 key shared by all sandbox hosts (public key next to it, .pub)."""
    return state_dir() / "id_ed25519"


def ssh_config_path() -> Path:
    return state_dir() / "ssh_config"


def known_hosts_path() -> Path:
    return state_dir() / "known_hosts"


def ip_forward_saved() -> Path:
    """The value net.ipv4.ip_forward had before the first host came up (restored after the last).
    Machine-wide and on tmpfs, like ip_forward itself: a reboot resets both."""
    return Path("/run/flasksample-sandbox.ip_forward")
