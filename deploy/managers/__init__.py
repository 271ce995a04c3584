"""Process managers behind one written interface (`Manager`), one module each.

A manager is a module of pure functions of Settings. For `fab setup` it renders its config
files, verifies them before they go live, and plans what to enable/start; for the remote
programs it names its shell side, deploy/remote/<NAME>.sh (start, reload, restart, logs and
the preflight boot, as shell functions), and the values that file needs.
"""
from __future__ import annotations

from typing import Protocol

from deploy.facts import Probe
from deploy.managers.base import ManagedFile
from deploy.managers import supervisor, systemd

__all__ = ["Manager", "ManagedFile", "manager_for", "other_managers"]


class Manager(Protocol):
    NAME: str  # also the name of its shell side, deploy/remote/<NAME>.sh

    def paths(self, s) -> list[str]:
        """Where its config files for the app go: the paths of `files(s)`, nothing rendered."""

    def files(self, s) -> list[ManagedFile]:
        """Its config files for the app, rendered."""

    def verify(self, s, staged: list[str]) -> str:
        """Shell that checks the staged copies of `files(s)` (same order), failing with ::error."""

    def probes(self, s) -> list[Probe]:
        """The facts `activate` needs."""

    def activate(self, s, f: dict, changed: set[str]) -> list[str]:
        """Shell that enables/starts what is not and applies the changed files (paths)."""

    def remove(self, s) -> list[str]:
        """Shell that stops and removes its config for the app (switching managers)."""

    def installed_probe(self, s) -> Probe:
        """The fact that says this manager's config for the app is on the host."""

    def program_values(self, s, release_dir: str) -> dict:
        """The values deploy/remote/<NAME>.sh needs, for a preflight of `release_dir`."""


MANAGERS: dict[str, Manager] = {"systemd": systemd, "supervisor": supervisor}  # type: ignore[dict-item]


def manager_for(s) -> Manager:
    return MANAGERS[s.process_manager]


def other_managers(s) -> list[Manager]:
    return [m for name, m in MANAGERS.items() if name != s.process_manager]
