"""Reads a host's state in one round trip: packages, user, directories, file hashes, units.

`probe_script(probes)` builds the shell that prints one `name<TAB>value` line per probe;
`parse(output)` turns that back into a dict. Setup steps declare the probes they need and
compare the answers with what they want, so a second run changes nothing.

Probes of one kind that a single command answers for many arguments (packages, directories,
file hashes, unit states, paths that exist) are asked together: one process per kind instead
of one per probe (a host's facts took 120 ms of the server's time that way, ~35 ms now).
Each batch first prints every key with the answer for "absent", then the command's lines for
what exists; `parse` keeps the last line of a key.
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
            # name:home:shell, cut by bash (each program started costs the host ~1 ms)
            "user": f"{{ IFS=: read -r kit_n _ _ _ _ kit_h kit_s < <(getent passwd {a}) "
                    f"&& echo \"$kit_n:$kit_h:$kit_s\"; }} || echo {MISSING}",
            "dir": f"stat -c '%U:%G:%a' {a} 2>/dev/null || echo {MISSING}",
            "sha": f"sha256sum {a} 2>/dev/null | cut -c1-64 | grep . || echo {MISSING}",
            "link": f"readlink {a} || echo {MISSING}",
            "exists": f"test -e {a} && echo yes || echo no",
            "enabled": f"systemctl is-enabled {a} 2>/dev/null || true",
            "active": f"systemctl is-active {a} 2>/dev/null || true",
            "cmd": f"command -v {a} || echo {MISSING}",
            # the app's processes: units now on the host (marked by their template's 2nd line)
            "procunits": f"for kit_f in $(grep -l '^# flasksample process [a-z0-9-]* of '{a}':' "
                         f"/etc/systemd/system/{a}-*.service 2>/dev/null); do "
                         "printf '%s ' \"${kit_f##*/}\"; done; echo",
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


UNIT_SUFFIXES = (".service", ".socket", ".timer", ".target", ".path", ".mount", ".slice")


def _unit_file(unit: str) -> str:
    """The unit file systemctl means by `unit` (a name without a suffix is a .service)."""
    return unit if unit.endswith(UNIT_SUFFIXES) else f"{unit}.service"


def _batch(kind: str, args: list[str]) -> list[str]:
    """Shell answering every probe of `kind` with one command (see the module's docstring)."""
    words = " ".join(q(a) for a in args)
    if kind == "pkg":  # installed in any architecture counts as installed
        return [f"printf 'pkg:%s\\t{MISSING}\\n' {words}",
                f"{{ dpkg-query -W -f='pkg:${{Package}}\\t${{db:Status-Status}}\\n' {words} 2>/dev/null || true; }}"
                " | awk -F'\\t' '$2 == \"installed\" {i[$1] = 1} {s[$1] = $2} "
                "END {for (k in s) print k \"\\t\" (k in i ? \"installed\" : s[k])}'"]
    if kind == "dir":
        return [f"printf 'dir:%s\\t{MISSING}\\n' {words}",
                f"stat --printf 'dir:%n\\t%U:%G:%a\\n' -- {words} 2>/dev/null || true"]
    if kind == "sha":
        return [f"printf 'sha:%s\\t{MISSING}\\n' {words}",
                f"{{ sha256sum -- {words} 2>/dev/null || true; }}"
                " | sed -n 's/^\\([0-9a-f]\\{64\\}\\)  \\(.*\\)$/sha:\\2\\t\\1/p'"]
    if kind == "exists":
        return [f"for kit_p in {words}; do if [ -e \"$kit_p\" ]; then printf 'exists:%s\\tyes\\n' \"$kit_p\"; "
                "else printf 'exists:%s\\tno\\n' \"$kit_p\"; fi; done"]
    if kind == "enabled":  # list-unit-files reads the unit files' state as is-enabled does
        # (an instance such as getty@tty1 is not a file of its own: asked alone)
        pairs = " ".join(f"{_unit_file(a)} {a}" for a in args)
        files = " ".join(q(_unit_file(a)) for a in args)
        return [f"printf 'enabled:%s\\t\\n' {words}",
                f"{{ systemctl list-unit-files --no-legend --no-pager {files} 2>/dev/null || true; }}"
                f" | awk -v pairs={q(pairs)} 'BEGIN {{n = split(pairs, a, \" \"); "
                "for (i = 1; i < n; i += 2) m[a[i]] = a[i + 1]} "
                "($1 in m) {print \"enabled:\" m[$1] \"\\t\" $2}'"]
    if kind == "active":  # one line per unit, in order
        return [f"paste <(printf 'active:%s\\n' {words}) "
                f"<(systemctl is-active {words} 2>/dev/null || true)"]
    raise ValueError(kind)


BATCHED = ("pkg", "dir", "sha", "exists", "enabled", "active")


# A script that only reads needs none of a changing script's header (deploy.shell.HEADER:
# umask, a scratch directory made and removed: four programs on the host).
READ_HEADER = "set -euo pipefail\nexport LC_ALL=C\n"


def read_script(probes: list[Probe]) -> str:
    """The whole script that reads `probes` (one round trip)."""
    return READ_HEADER + probe_script(probes)


def probe_script(probes: list[Probe]) -> str:
    """Shell printing `key<TAB>answer` per probe (answers are single lines)."""
    seen, lines, batches = set(), [], {}
    for p in probes:
        if p.key in seen:
            continue
        seen.add(p.key)
        if type(p) is Probe and p.kind in BATCHED and not (p.kind == "enabled" and "@" in p.arg):
            batches.setdefault(p.kind, []).append(p.arg)
        else:
            lines.append(f"printf '%s\\t%s\\n' {q(p.key)} \"$({p.command()} | head -n1)\"")
    for kind, args in batches.items():
        lines += _batch(kind, args)
    return "\n".join(lines) + "\n"


def parse(output: str) -> dict[str, str]:
    facts = {}
    for line in output.splitlines():
        key, sep, value = line.partition("\t")
        if sep:
            facts[key] = value.strip()
    return facts
