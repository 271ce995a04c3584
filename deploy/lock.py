"""The deploy lock on each host: a directory created atomically, recording who holds it.

A second deploy refuses at once, naming the holder and since when; a lock left by a dead
deploy is broken only on request (`fab deploy --force`), never silently. The lock also keeps a
random token of the fab run that took it, compared exactly before the lock is freed, so a
deploy whose lock was broken never frees the next holder's. The shell side is in
deploy/remote/lib.sh (`lock_take`, `lock_ours`, `lock_free`, `lock_status`).
"""
from __future__ import annotations

import getpass
import os
import secrets
import socket

from deploy import layout
from deploy.protocol import Exit

LOCKED_EXIT = Exit.LOCKED
RUN_TOKEN = secrets.token_hex(16)  # one per fab run (process)


class Holder(str):
    """Who takes the lock: the text is for people to read (user@machine (pid N)), `token` is
    what the lock compares."""

    token: str

    def __new__(cls, who: str, token: str = RUN_TOKEN):
        obj = super().__new__(cls, who)
        obj.token = token
        return obj

    @property
    def who(self) -> str:
        return str(self)


def holder() -> Holder:
    """This fab process: user@machine (pid N), with this run's token."""
    return Holder(f"{getpass.getuser()}@{socket.gethostname()} (pid {os.getpid()})")


def values(s, who: Holder | str | None = None, force: bool = False) -> dict:
    """The lock's values for a remote program (a plain name holds with this run's token)."""
    if not isinstance(who, Holder):
        who = Holder(who) if who else Holder("", "")
    return {"KIT_DIR": layout.kit_dir(s), "LOCK": layout.lock_dir(s), "HOLDER": who.who,
            "TOKEN": who.token, "FORCE": force}
