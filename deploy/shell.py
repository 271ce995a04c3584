"""Small helpers that build shell text: quoting, scripts, writing a file in one line, and the
remote programs (deploy/remote/*.sh) with their values.

Everything here returns strings; nothing runs. Builders combine these into the scripts that
`deploy.runner` sends to a server in one round trip.
"""
from __future__ import annotations

import base64
import re
import secrets
import shlex
from importlib import resources

q = shlex.quote

# Root's scratch files live in a directory of their own per run (mktemp -d), inside a
# root-only directory under /run: never at predictable /tmp paths another local user could
# plant a symlink at, and never shared by two runs (or two apps) at once.
SCRATCH = "/run/flasksample-kit"
RUN_SCRATCH = f"{SCRATCH}/run-{secrets.token_hex(8)}"


def scratch(name: str) -> str:
    """A path in this run's scratch directory (made by every script's header as $KIT_TMP,
    removed at its end)."""
    return f"{RUN_SCRATCH}/{name}"


HEADER = ("set -euo pipefail\numask 022\nexport LC_ALL=C DEBIAN_FRONTEND=noninteractive\n"
          f"install -d -m 700 {SCRATCH}\nKIT_TMP={RUN_SCRATCH}\n"
          'rm -rf "$KIT_TMP" && mkdir -m 700 "$KIT_TMP"\ntrap \'rm -rf "$KIT_TMP"\' EXIT\n')

REMOTE = resources.files("deploy") / "remote"
VALUE_NAME = re.compile(r"[A-Z][A-Z0-9_]*")
DETAIL_NAME = re.compile(r"[a-z_][a-z0-9_]*")  # a script's own variable (`fail` detail)


def remote_file(name: str) -> str:
    """The text of one shipped shell file under deploy/remote/ (package data)."""
    return (REMOTE / name).read_text()


def assign(name: str, value) -> str:
    """`NAME=value` for a program's preamble; a list becomes a bash array, a bool 1 or 0."""
    if not VALUE_NAME.fullmatch(name):
        raise ValueError(f"bad program value name {name!r}")
    if isinstance(value, bool):
        value = int(value)
    if isinstance(value, (list, tuple)):
        return f"{name}=(" + " ".join(q(str(v)) for v in value) + ")"
    return f"{name}={q(str(value))}"


def function(name: str, lines: list[str]) -> str:
    """A shell function made of lines built in Python (`true` when there are none)."""
    if not VALUE_NAME.fullmatch(name.upper()):
        raise ValueError(f"bad function name {name!r}")
    return f"{name}() {{\n" + "\n".join(flatten(lines) or ["true"]) + "\n}"


def program(name: str, values: dict, manager: str | None = None, functions: dict | None = None,
            libs: tuple[str, ...] = ()) -> str:
    """One script for one round trip: header, values, lib.sh and the other function files
    `libs` (e.g. venv.sh), the manager's functions, shell functions built in Python
    (`functions`: name -> lines), and deploy/remote/<name>.sh."""
    return script(
        [assign(k, v) for k, v in values.items()],
        remote_file("lib.sh"),
        [remote_file(lib) for lib in libs],
        remote_file(f"{manager}.sh") if manager else "",
        [function(k, v) for k, v in (functions or {}).items()],
        remote_file(f"{name}.sh"),
    )


def subprogram(name: str, values: dict) -> str:
    """deploy/remote/<name>.sh with lib.sh and its values as part of a script built in Python
    (a setup step's lines): in a subshell, with a scratch dir of its own inside the run's (lib.sh's
    exit hook removes that one, not the run's). Fails as the program does."""
    return "\n".join(["(", f'KIT_TMP="$KIT_TMP/{name}" && mkdir -m 700 "$KIT_TMP"',
                      *[assign(k, v) for k, v in values.items()],
                      remote_file("lib.sh"), remote_file(f"{name}.sh"), ")"])


def flatten(parts) -> list[str]:
    """Lines from strings and (nested) lists of strings, empty ones dropped."""
    lines: list[str] = []
    for part in parts:
        if isinstance(part, str):
            if part:
                lines.append(part)
        else:
            lines.extend(flatten(part))
    return lines


def script(*parts) -> str:
    """Join lines (or nested lists of lines) into one bash script that stops at the first error."""
    return HEADER + "\n".join(flatten(parts)) + "\n"


def write_file(path: str, content: str, mode: str = "0644", owner: str = "root:root") -> str:
    """Write `content` to `path` atomically (temp file + rename), with mode and owner."""
    data = base64.b64encode(content.encode()).decode()
    tmp = f"{path}.kit-new"
    return (
        f"printf %s {q(data)} | base64 -d > {q(tmp)} && chmod {mode} {q(tmp)} && "
        f"chown {owner} {q(tmp)} && mv -f {q(tmp)} {q(path)}"
    )


def step(name: str) -> str:
    """A marker line the runner uses to time and report each step of a script."""
    return f"echo \"::step {name} $(date +%s.%N)\""


def fail(problem: str, fix: str, code: int = 1, detail: str = "") -> str:
    """Shell that prints the one-line `::error PROBLEM — FIX` and stops with `code`: the one way
    a script built in Python reports an error (the programs under deploy/remote/ use lib.sh's
    `fail`, which prints the same line). `detail`: the name of a shell variable whose value,
    read when the script runs (e.g. the reason a server gave), ends the problem."""
    if not detail:
        return f"{{ printf '::error %s — %s\\n' {q(problem)} {q(fix)}; exit {int(code)}; }}"
    if not DETAIL_NAME.fullmatch(detail):
        raise ValueError(f"bad detail variable name {detail!r}")
    return (f"{{ printf '::error %s%s — %s\\n' {q(problem)} \"${{{detail}:-}}\" {q(fix)}; "
            f"exit {int(code)}; }}")

