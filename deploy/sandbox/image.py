"""The base root filesystem every sandbox host boots from: recipe, cache key, build, unpack.

One recipe per Debian release (bookworm = 12, the default; trixie = 13). The recipe (suite,
mirrors, packages, hooks) is plain data; its sha256 is the cache key, so each release and each
changed recipe builds its own tarball. The tarball (`mmdebstrap` → .tar.zst) is cached under
FLASKSAMPLE_IMAGE_CACHE and unpacked once under the state dir, where it is the shared read-only
lower dir of every host's overlay.
"""
import hashlib
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

from deploy.errors import KitError
from deploy.sandbox import paths
from deploy.sandbox.locking import file_lock

DEFAULT_RELEASE = "bookworm"
RELEASES = {"bookworm": "Debian 12", "trixie": "Debian 13"}
VARIANT = "minbase"


def mirrors(suite: str) -> tuple[str, ...]:
    return (
        f"deb http://deb.debian.org/debian {suite} main",
        f"deb http://deb.debian.org/debian {suite}-updates main",
        f"deb http://deb.debian.org/debian-security {suite}-security main",
    )


# What a fresh cloud VM has: systemd as init, sshd, sudo, python3 (for the kit) and little else.
INCLUDE = (
    "systemd",
    "systemd-sysv",
    "dbus",
    "libpam-systemd",
    "openssh-server",
    "sudo",
    "python3",
    "ca-certificates",
)
# Downloaded (not installed) into /var/cache/apt/archives so the kit's `apt-get install` is fast.
PREDOWNLOAD = ("nginx", "supervisor", "python3-venv", "python3-pip", "curl")
DEPLOY_USER = "deploy"
DEPLOY_UID = 1000
APT_OPTIONS = ('Acquire::Check-Valid-Until "false"',)
# Shell run by mmdebstrap with "$1" = the new root, after the packages are installed.
CUSTOMIZE_HOOKS = (
    # every host gets its own ssh host keys (machine.py); none may be baked into the image
    'rm -f "$1"/etc/ssh/ssh_host_*',
    f'chroot "$1" useradd --create-home --shell /bin/bash --uid {DEPLOY_UID} --user-group {DEPLOY_USER}',
    'ln -sf /dev/null "$1"/etc/systemd/system/apt-daily.timer',
    'ln -sf /dev/null "$1"/etc/systemd/system/apt-daily-upgrade.timer',
    # the container console is read-only: a getty there only fails
    'ln -sf /dev/null "$1"/etc/systemd/system/console-getty.service',
    'rm -f "$1"/var/cache/apt/archives/*.deb',
    'chroot "$1" env -u APT_CONFIG apt-get install --download-only --yes -o APT::Install-Recommends=true ' + " ".join(PREDOWNLOAD),
    'rm -f "$1"/var/cache/apt/*.bin',
)
RECIPE_VERSION = 1  # bump when the build procedure changes in a way the data above doesn't show


def check_release(release: str) -> str:
    """The release itself, or KitError naming the ones there are."""
    if release not in RELEASES:
        known = ", ".join(f"{r} ({v})" for r, v in RELEASES.items())
        raise KitError(f"unknown sandbox release {release!r} (known: {known})",
                       f"use --release {' or --release '.join(RELEASES)}")
    return release


def recipe(release: str = DEFAULT_RELEASE) -> dict:
    """Everything that decides the image's content, as plain data."""
    return {
        "version": RECIPE_VERSION,
        "suite": check_release(release),
        "variant": VARIANT,
        "mirrors": list(mirrors(release)),
        "include": list(INCLUDE),
        "predownload": list(PREDOWNLOAD),
        "apt_options": list(APT_OPTIONS),
        "hooks": list(CUSTOMIZE_HOOKS),
    }


def cache_key(r: dict | None = None) -> str:
    """A short sha256 of the recipe: a changed recipe gives a new key (and a new tarball)."""
    text = json.dumps(r if r is not None else recipe(), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def tarball_name(key: str, release: str = DEFAULT_RELEASE) -> str:
    return f"debian-{release}-sandbox-{key}.tar.zst"


def mmdebstrap_argv(target: str, r: dict | None = None) -> list[str]:
    """The mmdebstrap command that builds the recipe into `target` (a .tar.zst path)."""
    r = r if r is not None else recipe()
    argv = [
        "mmdebstrap",
        f"--variant={r['variant']}",
        "--include=" + ",".join(r["include"]),
        # keep apt lists and the downloaded .debs: `apt-get install nginx` works without update
        "--skip=cleanup/apt/lists",
        "--skip=cleanup/apt/cache",
    ]
    argv += [f"--aptopt={opt}" for opt in r["apt_options"]]
    argv += [f"--customize-hook={hook}" for hook in r["hooks"]]
    argv += [r["suite"], target, *r["mirrors"]]
    return argv


def unpack_argv(tarball: str, dest: str) -> list[str]:
    """tar command that unpacks the image keeping numeric owners, modes and xattrs."""
    return [
        "tar", "--numeric-owner", "--xattrs", "--xattrs-include=*", "-I", "zstd",
        "-xpf", tarball, "-C", dest,
    ]


def build(release: str, log) -> Path:
    """Build the tarball for the release's recipe into the image cache (atomically); return its path."""
    r = recipe(release)
    key = cache_key(r)
    cache = paths.image_cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    final = cache / tarball_name(key, release)
    tmp = cache / f".building-{os.getpid()}-{key}.tar.zst"
    log(f"building base image {final.name} with mmdebstrap (about a minute, once)")
    started = time.monotonic()
    result = subprocess.run(mmdebstrap_argv(str(tmp), r), capture_output=True, text=True)
    if result.returncode != 0:
        tmp.unlink(missing_ok=True)
        logfile = cache / f"build-{key}.log"
        logfile.write_text(result.stdout + result.stderr)
        raise KitError(f"building the base image failed (mmdebstrap exit {result.returncode})",
                       f"read {logfile}; check that deb.debian.org is reachable")
    os.replace(tmp, final)
    log(f"base image built in {time.monotonic() - started:.0f}s")
    return final


def ensure_rootfs(log=lambda msg: None, release: str = DEFAULT_RELEASE) -> Path:
    """Return the release's unpacked base root (the overlay lower dir), building/unpacking it
    if needed."""
    key = cache_key(recipe(release))
    image_dir = paths.images_dir() / key
    rootfs = image_dir / "rootfs"
    done = image_dir / "complete"
    if done.exists():
        return rootfs
    with file_lock(paths.images_dir() / f".{key}.lock"):
        if done.exists():
            return rootfs
        tarball = paths.image_cache_dir() / tarball_name(key, release)
        if not tarball.exists():
            with file_lock(paths.image_cache_dir() / f".{key}.lock"):
                if not tarball.exists():
                    build(release, log)
        if rootfs.exists():
            shutil.rmtree(rootfs)
        tmp = image_dir / "rootfs.partial"
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
        result = subprocess.run(unpack_argv(str(tarball), str(tmp)), capture_output=True, text=True)
        if result.returncode != 0:
            raise KitError(f"unpacking {tarball} failed: {result.stderr.strip()[:200]}",
                           f"delete {tarball} so it is rebuilt")
        tmp.rename(rootfs)
        done.write_text(key + "\n")
    return rootfs
