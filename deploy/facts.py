"""Reads a host's state in one round trip: packages, user, directories, file hashes, units.

`probe_script(probes)` builds the shell that prints one `name<TAB>value` line per probe;
`parse(output)` turns that back into a dict. Setup steps declare the probes they need and
compare the answers with what they want, so a second run changes nothing.
"""
from __future__ import annotations

from dataclasses import dataclass

from deploy.shell import q

MISSING = "missing"


@dataclass(frozen=True)
class Probe:
    """One question about the host; `key` is how steps look the answer up."""

    kind: str
    arg: str

    @property
    def key(self) -> str:
        return f"{self.kind}:{self.arg}"

    def command(self) -> str:
        a = q(self.arg)
        return {
            "pkg": f"dpkg-query -W -f='${{db:Status-Status}}' {a} 2>/dev/null || echo {MISSING}",
            "user": f"getent passwd {a} | cut -d: -f1,6,7 | grep . || echo {MISSING}",
            "dir": f"stat -c '%U:%G:%a' {a} 2>/dev/null || echo {MISSING}",
            "sha": f"sha256sum {a} 2>/dev/null | cut -c1-64 | grep . || echo {MISSING}",
            "link": f"readlink {a} || echo {MISSING}",
            "exists": f"test -e {a} && echo yes || echo no",
            "enabled": f"systemctl is-enabled {a} 2>/dev/null || true",
            "active": f"systemctl is-active {a} 2>/dev/null || true",
            "cmd": f"command -v {a} || echo {MISSING}",
            # the app's processes: units now on the host (marked by their template's 2nd line)
            "procunits": f"grep -l '^# flasksample process [a-z0-9-]* of '{a}':' "
                         f"/etc/systemd/system/{a}-*.service 2>/dev/null | sed 's#.*/##' | tr '\\n' ' '; echo",
        }[self.kind]


def pkg(name): return Probe("pkg", name)
def procunits(app): return Probe("procunits", app)
def user(name): return Probe("user", name)
def dir_(path): return Probe("dir", path)
def sha(path): return Probe("sha", path)
def link(path): return Probe("link", path)
def exists(path): return Probe("exists", path)
def enabled(unit): return Probe("enabled", unit)
def active(unit): return Probe("active", unit)


def probe_script(probes: list[Probe]) -> str:
    """Shell printing `key<TAB>answer` per probe (answers are single lines)."""
    seen, lines = set(), []
    for p in probes:
        if p.key in seen:
            continue
        seen.add(p.key)
        lines.append(f"printf '%s\\t%s\\n' {q(p.key)} \"$({p.command()} | head -n1)\"")
    return "\n".join(lines) + "\n"


def parse(output: str) -> dict[str, str]:
    facts = {}
    for line in output.splitlines():
        key, sep, value = line.partition("\t")
        if sep:
            facts[key] = value.strip()
    return facts
