"""What the remote programs tell fab: exit codes and marker lines, defined once.

Exit codes are the same table as `deploy/remote/lib.sh` (a unit test checks they agree).
Marker lines start with `::` and carry one name and an optional value:

    ::step NAME EPOCH          times the steps of a program (`step` in lib.sh)
    ::error PROBLEM — FIX      the one-line reason a program failed (`fail`)
    ::previous RELEASE         the release that was live before a switch
    ::prepared                 prepare got to its end
    ::env changed|unchanged    the env editor's verdict; ::var NAME SOURCE, ::missing (env.list)

`parse` is the only reader: it never raises, so a malformed marker is an ordinary line (the
app's own output is indented by the programs, so it cannot pose as one).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import IntEnum


class Exit(IntEnum):
    FAILED = 1
    USAGE = 2
    PREFLIGHT = 3
    UNHEALTHY = 4
    RELEASE_COMMAND = 5
    LOCKED = 75
    GONE = 141  # SIGPIPE: the client vanished


# A release id as deploy/package.py makes them: UTC time, milliseconds, commit or content hash.
RELEASE_RE = re.compile(r"[0-9]{8}-[0-9]{6}\.[0-9]{3}-[0-9a-f]{7,40}")

MARKER_RE = re.compile(r"::([a-z][a-z-]*)(?: (.*))?")


def is_release(name: str | None) -> bool:
    return bool(name) and RELEASE_RE.fullmatch(name) is not None


@dataclass
class Parsed:
    """A program's stdout split into plain lines, step marks, markers and its error."""

    lines: list[str] = field(default_factory=list)
    marks: list[tuple[str, float]] = field(default_factory=list)
    markers: dict[str, list[str]] = field(default_factory=dict)
    error: str | None = None


def parse(stdout: str) -> Parsed:
    out = Parsed()
    for line in stdout.splitlines():
        m = MARKER_RE.fullmatch(line)
        if not m:
            out.lines.append(line)
            continue
        name, value = m.group(1), m.group(2) or ""
        if name == "step":
            step, _, ts = value.partition(" ")
            try:
                out.marks.append((step, float(ts)))
            except ValueError:
                out.lines.append(line)
            continue
        if name == "error":
            out.error = value
        out.markers.setdefault(name, []).append(value)
    return out
