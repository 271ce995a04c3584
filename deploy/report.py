"""Formats what the kit tells the user: one line per step, prefixed by the host."""
from __future__ import annotations

from deploy.cli import say


def step_line(step: str, changed: bool, summary: str, seconds: float | None = None) -> str:
    state = "changed  " if changed else "unchanged"
    took = f"  ({seconds:.2f}s)" if seconds is not None else ""
    detail = f"  {summary}" if changed else ""
    return f"{step:<16} {state}{detail}{took}"


def host_say(host: str, message: str) -> None:
    say(f"[{host}] {message}")
