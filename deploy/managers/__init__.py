"""Process managers behind one small interface, one module each (systemd, supervisor).

Each module offers, as pure functions of Settings: `files(s)` (the config files it needs,
rendered), `probes(s)` and `activate(s, facts, files_changed)` (setup), and the one-line
commands `start`, `reload`, `restart`, `graceful_restart` (what `fab restart` uses), `status`, `logs`, `main_pid`, `remove`.
None of them knows about nginx.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ManagedFile:
    """A config file the kit owns on the server: where, what, and who may read it."""

    path: str
    content: str
    mode: str = "0644"


def manager_for(s):
    from deploy.managers import supervisor, systemd

    return {"systemd": systemd, "supervisor": supervisor}[s.process_manager]


def other_managers(s):
    from deploy.managers import supervisor, systemd

    return [m for m in (systemd, supervisor) if m.NAME != s.process_manager]
