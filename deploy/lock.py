"""The deploy lock on each host: a directory created atomically, recording who holds it.

A second deploy refuses at once, naming the holder and since when; a lock left by a dead
deploy is broken only on request (`fab deploy --force`), never silently.
"""
from __future__ import annotations

import getpass
import os
import socket

from deploy import layout
from deploy.shell import q

LOCKED_EXIT = 75


def holder() -> str:
    """Who takes the lock: user@machine (pid N) of this fab process."""
    return f"{getpass.getuser()}@{socket.gethostname()} (pid {os.getpid()})"


def acquire(s, holder: str, release: str, force: bool = False) -> list[str]:
    """Take the lock (or fail with the holder's details); `force` first breaks an old lock."""
    lock = q(layout.lock_dir(s))
    info = f"{holder}, release {release}"
    lines = [f"install -d -m 700 {q(layout.kit_dir(s))}"]
    if force:
        lines.append(f"if [ -d {lock} ]; then echo \"broke the lock held by $(cat {lock}/holder "
                     f"2>/dev/null) since $(cat {lock}/since 2>/dev/null)\"; rm -rf {lock}; fi")
    lines += [
        f"if ! mkdir {lock} 2>/dev/null; then "
        f"echo \"::error deploy locked by $(cat {lock}/holder 2>/dev/null || echo unknown) since "
        f"$(cat {lock}/since 2>/dev/null || echo unknown) — wait for it, or if it died run "
        f"again with --force\"; exit {LOCKED_EXIT}; fi",
        f"printf '%s\\n' {q(info)} > {lock}/holder",
        f"date -u +%Y-%m-%dT%H:%M:%SZ > {lock}/since",
    ]
    return lines


def held_by(s, holder: str) -> str:
    """A shell condition: the lock exists and names this holder."""
    return f"grep -qs {q(holder)} {q(layout.lock_dir(s) + '/holder')}"


def release_line(s) -> str:
    return f"rm -rf {q(layout.lock_dir(s))}"


def status_line(s) -> str:
    lock = q(layout.lock_dir(s))
    return (f"if [ -d {lock} ]; then echo \"locked by $(cat {lock}/holder) since $(cat {lock}/since)\"; "
            "else echo unlocked; fi")
