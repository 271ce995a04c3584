"""Small helpers that build shell text: quoting, scripts, writing a file in one line.

Everything here returns strings; nothing runs. Builders combine these into the scripts that
`deploy.runner` sends to a server in one round trip.
"""
from __future__ import annotations

import base64
import shlex

q = shlex.quote

# Root's scratch files live in a root-only directory under /run, never at predictable /tmp
# paths another local user could plant a symlink at.
SCRATCH = "/run/flasksample-kit"
def scratch(name: str) -> str:
    """A path in the kit's root-only scratch directory (created by every script's header)."""
    return f"{SCRATCH}/{name}"


HEADER = ("set -euo pipefail\numask 022\nexport LC_ALL=C DEBIAN_FRONTEND=noninteractive\n"
          f"install -d -m 700 {SCRATCH}\n")


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


def fail(message: str, code: int = 1) -> str:
    """Print a one-line error for the runner to pick up, and stop the script."""
    return f"{{ echo {q('::error ' + message)}; exit {code}; }}"
