"""`fab env.set / env.unset / env.list`: the app's environment and secrets on the server.

    fab -H web1 env.set SECRET_KEY           asks for the value (hidden), or reads it from stdin
    fab -H web1 env.set LOG_LEVEL=debug      the value on the command line (fine for non-secrets)
    fab -H web1 env.list                     names and where they come from; values masked
    fab -H web1 env.unset LOG_LEVEL

The file's format, where values travel and how a change is applied: deploy/envfile.py.
`sync_settings(remote, s)` writes the `env:` setting into the same file (`fab setup` calls it).
"""
from __future__ import annotations

import getpass
import sys

from invoke import Collection

from deploy import envfile
from deploy.cli import kit_task
from deploy.lock import holder
from deploy.errors import KitError
from deploy.fleet import each, remotes_with_settings
from deploy.runner import Remote
from deploy import report

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
    return envfile.check_value(name, value)


def _report(remote: Remote, out) -> bool:
    """Print the editing program's report (names only); True when the file changed."""
    for line in out.lines:
        if line.startswith("in-block "):
            name = line.split()[1]
            raise KitError(f"{remote.label}: {name} comes from env: in fabric.yaml",
                           "remove it there and run fab setup")
        if not line.startswith(("::", "block ")):
            report.host_say(remote.label, "  " + line)
    return "::env changed" in out.lines


def apply(remote: Remote, s, payload: str, what: str) -> bool:
    """Send the changes (on stdin) and apply them; True when the env file changed."""
    out = remote.run(envfile.change_script(s, holder()), stdin=payload)
    changed = _report(remote, out)
    if not out.ok:
        raise remote.failure(out, what)
    return changed


def sync_settings(remote: Remote, s) -> None:
    """Write the `env:` setting into the env file's fabric.yaml block (restart if it changed)."""
    changed = apply(remote, s, envfile.payload(s, block=s.env), "writing env: from fabric.yaml")
    report.host_say(remote.label, report.step_line(
        "app-env", changed, f"env: from fabric.yaml ({len(s.env)} variables) into shared/env"))


@kit_task(name="set", help={"assignment": "NAME=VALUE, or NAME alone to be asked for the value "
                                          "(hidden prompt, or stdin when piped)"})
def set_(c, assignment):
    """Set one variable in the app's environment on the server and restart it (zero-drop)."""
    name, value = envfile.parse_argument(assignment)
    remotes, settings_for = remotes_with_settings(c, f"env.set {name}")
    if not remotes:
        return
    for r in remotes:
        if name in settings_for(r).env:
            raise KitError(f"{name} is set in env: in fabric.yaml", "change it there and run "
                           "fab setup, or remove it there to keep it on the server only")
    value = read_value(name) if value is None else value
    each(remotes, lambda r: apply(r, settings_for(r), envfile.payload(settings_for(r), sets={name: value}),
                                  f"setting {name}"))


@kit_task(name="unset", help={"name": "the variable to remove"})
def unset(c, name):
    """Remove one variable from the app's environment on the server and restart it."""
    envfile.check_name(name)
    remotes, settings_for = remotes_with_settings(c, f"env.unset {name}")
    if remotes:
        each(remotes, lambda r: apply(r, settings_for(r), envfile.payload(settings_for(r), unsets=[name]),
                                      f"removing {name}"))


@kit_task(name="list")
def list_(c):
    """The variables in the app's environment on the server: names and sources, values masked."""
    remotes, settings_for = remotes_with_settings(c, "env.list")
    for r in remotes or []:
        out = r.must(envfile.list_script(settings_for(r)), "reading the env file")
        if "::missing" in out.lines:
            report.host_say(r.label, "  no env file yet (fab env.set NAME creates it)")
        for line in out.lines:
            if line.startswith("::var "):
                _, name, source = line.split()
                where = "from env: in fabric.yaml" if source == "fabric.yaml" else "set on the server"
                report.host_say(r.label, f"  {name:<24} {MASK}  ({where})")


env_ns = Collection("env", set_, unset, list_)
