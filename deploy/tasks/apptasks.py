"""`fab exec`: one command of the user's in the current release, output and exit code passed on.

The command runs as the app runs (deploy/appcmd.py); with -i it gets a terminal (SSH pty and
systemd-run --pty), e.g. `fab exec -i 'flask --app shop shell'`.
"""
from __future__ import annotations

from deploy import appcmd, audit
from deploy.errors import KitError
from deploy.lock import holder
from deploy.runner import Remote, root_command
from deploy.shell import script


def exec_on(remote: Remote, s, command: str, interactive: bool = False) -> int:
    """Run `command` on one host; returns its exit code (its output went to ours as it came)."""
    if not command.strip() or any(c in command for c in "\n\r\0"):
        raise KitError("fab exec needs one command line", "quote it: fab exec 'flask --app shop init-db'")
    # the audit log names the program only: its arguments may carry secrets
    entry = audit.append_line(s, holder(), "exec " + command.split()[0])
    text = script(entry, appcmd.exec_lines(s, command, interactive))
    if not interactive:
        out = remote.run(text, stream=True)
        if out.error:
            raise KitError(f"{remote.label}: {out.error}")
        return out.code
    remote.connect()
    if not remote.as_root and remote.conn.config.get("sudo", {}).get("password"):
        raise KitError("fab exec -i cannot type a sudo password for you",
                       "allow NOPASSWD sudo for this user, or connect as root")
    result = remote.conn.run(root_command(text, remote.as_root), pty=True, warn=True)
    return result.exited
