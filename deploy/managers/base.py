"""What every process manager hands to setup: the config files the kit owns on the server."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ManagedFile:
    """A config file the kit owns on the server: where, what, and who may read it."""

    path: str
    content: str
    mode: str = "0644"
