"""`fab env.set / env.unset / env.list`: the app's environment and secrets on the server.

    fab -H web1 env.set SECRET_KEY           asks for the value (hidden), or reads it from stdin
    fab -H web1 env.set LOG_LEVEL=debug      the value on the command line (fine for non-secrets)
    fab -H web1 env.list                     names and where they come from; values masked
    fab -H web1 env.unset LOG_LEVEL

The file's format, where values travel and how a change is applied: deploy/envfile.py.
`sync_settings(remote, s, facts)` writes the `env:` setting into the same file (`fab setup` calls
it, with the facts setup read: a block already in place costs no round trip).
"""
from __future__ import annotations

import getpass
import secrets as secrets_mod
import sys

from typing import TYPE_CHECKING

from invoke import Collection

from deploy import report
from deploy.errors import KitError
from deploy.fleet import each, on_hosts

if TYPE_CHECKING:
    from deploy.runner import Remote


def _envfile():
    """deploy.envfile, imported when a task uses it (not for `fab --list`)."""
    from deploy import envfile

    return envfile

MASK = "********"


def read_value(name: str) -> str:
    """The value of `name` from a hidden prompt (terminal) or stdin (pipe), never echoed."""
    if sys.stdin is not None and sys.stdin.isatty():
        try:
            value = getpass.getpass(f"{name} (input hidden): ")
        except EOFError:
            value = ""
    else:
        value = sys.stdin.read() if sys.stdin is not None else ""
        value = value[:-1] if value.endswith("\n") else value
        value = value[:-1] if value.endswith("\r") else value
    if value == "":
        raise KitError(f"no value given for {name}",
                       f"type it at the prompt or pipe it in; for an empty value: fab env.set {name}=")
    return _envfile().check_value(name, value)


def _report(remote: Remote, out) -> bool:
    """Print the editing program's report (names only); True when the file changed."""
    for line in out.lines:
        if line.startswith("in-block "):
            name = line.split()[1]
            raise KitError(f"{remote.label}: {name} comes from env: in fabric.yaml",
                           "remove it there and run fab setup")
        if not line.startswith("block "):
            report.host_say(remote.label, "  " + line)
    return out.marker("env") == "changed"


def apply(remote: Remote, s, payload: str, what: str, audit_what: str) -> bool:
    """Send the changes (on stdin) and apply them; True when the env file changed (then the
    audit log records `audit_what`: names only)."""
    from deploy.lock import holder

    out = remote.run(_envfile().change_script(s, holder(), audit_what), stdin=payload)
    changed = _report(remote, out)
    if not out.ok:
        raise remote.failure(out, what)
    return changed


def sync_settings(remote: Remote, s, facts: dict[str, str] | None = None) -> None:
    """Write the `env:` setting into the env file's fabric.yaml block (restart if it changed).
    `facts` with `envfile.block_probe(s)` answered: nothing is sent when they show it in place."""
    envfile = _envfile()
    changed = False
    if facts is None or not envfile.block_in_place(s, facts):
        changed = apply(remote, s, envfile.payload(s, block=s.env), "writing env: from fabric.yaml",
                        "env: from fabric.yaml " + " ".join(sorted(s.env)))
    report.host_say(remote.label, report.step_line(
        "app-env", changed, f"env: from fabric.yaml ({len(s.env)} variables) into shared/env"))


@on_hosts(name="set", check=lambda assignment: _envfile().parse_argument(assignment),
          help={"assignment": "NAME=VALUE, or NAME alone to be asked for the value "
                              "(hidden prompt, or stdin when piped)"})
def set_(fleet, assignment):
    """Set one variable in the app's environment on every web host and restart it (zero-drop)."""
    envfile = _envfile()
    name, value = envfile.parse_argument(assignment)
    for r in fleet.web:
        if name in fleet.settings_for(r).env:
            raise KitError(f"{name} is set in env: in fabric.yaml", "change it there and run "
                           "fab setup, or remove it there to keep it on the server only")
    value = read_value(name) if value is None else value
    each(fleet.web, lambda r: apply(r, fleet.settings_for(r),
                                    envfile.payload(fleet.settings_for(r), sets={name: value}),
                                    f"setting {name}", f"env.set {name}"))


@on_hosts(name="unset", check=lambda name: _envfile().check_name(name),
          help={"name": "the variable to remove"})
def unset(fleet, name):
    """Remove one variable from the app's environment on every web host and restart it."""
    envfile = _envfile()
    each(fleet.web, lambda r: apply(r, fleet.settings_for(r),
                                    envfile.payload(fleet.settings_for(r), unsets=[name]),
                                    f"removing {name}", f"env.unset {name}"))


def _variables(r: Remote, s, salt: str) -> dict[str, tuple[str, str]] | None:
    """{name: (source, digest)} on one host; None when it has no env file."""
    envfile = _envfile()
    out = r.must(envfile.list_script(s), "reading the env file")
    if out.marker("missing") is not None:
        return None
    digests = dict(v.split()[:2] for v in r.must(envfile.digest_script(s), "reading the env file",
                                                 stdin=salt + "\n").markers.get("digest", [])
                   if len(v.split()) >= 2)
    return {n: (src, digests.get(n, "")) for n, src in
            (v.split()[:2] for v in out.markers.get("var", []) if len(v.split()) >= 2)}


def _difference(name: str, found: dict[str, tuple[str, str] | None]) -> str:
    """'' when every host has `name` with the same value, else where the hosts differ."""
    missing = [h for h, v in found.items() if not v or name not in v]
    groups: dict[str, list[str]] = {}
    for h, v in found.items():
        if v and name in v:
            groups.setdefault(v[name][1], []).append(h)
    parts = [f"missing on {', '.join(missing)}"] if missing else []
    if len(groups) > 1:
        parts.append("values differ: " + " | ".join(", ".join(hs) for hs in groups.values()))
    return "; ".join(parts)


@on_hosts(name="list")
def list_(fleet):
    """The variables in the app's environment on every web host: names and sources, values
    masked; with several hosts, where they differ."""
    salt = secrets_mod.token_hex(16)
    found = dict(zip((r.label for r in fleet.web),
                     each(fleet.web, lambda r: _variables(r, fleet.settings_for(r), salt))))
    for host, variables in found.items():
        if variables is None:
            report.host_say(host, "  no env file yet (fab env.set NAME creates it)")
    names = sorted({n for v in found.values() if v for n in v})
    label = fleet.web[0].label if len(found) == 1 else f"{len(found)} hosts"
    for name in names:
        source = next(v[name][0] for v in found.values() if v and name in v)
        where = "from env: in fabric.yaml" if source == "fabric.yaml" else "set on the server"
        diff = _difference(name, found) if len(found) > 1 else ""
        report.host_say(label, f"  {name:<24} {MASK}  ({where})" + (f"  DIFFERS: {diff}" if diff else ""))


env_ns = Collection("env", set_, unset, list_)
