"""Setup steps: each reads facts, compares them with the wanted state, and plans only the diff.

A step is an object with `name`, `probes(s)` (the facts it needs) and `plan(s, facts)`,
which returns a `Change`: an empty `lines` list means "unchanged". `ordered(s)` is the list
`fab setup` runs, in order.
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Change:
    """What a step would do: `lines` to run (none = unchanged), a short human summary, and
    the files it would write as (path, content), which `fab setup --check` diffs."""

    step: str
    summary: str = "unchanged"
    lines: list[str] = field(default_factory=list)
    files: list[tuple[str, str]] = field(default_factory=list)
    stdin: str = ""  # data the lines read from fd 3 (secrets: never on a command line)

    @property
    def changed(self) -> bool:
        return bool(self.lines)


def ordered(s):
    """The setup steps for these settings, in the order they must run."""
    from deploy.managers import manager_for
    from deploy.steps import account, packages, site, tls, units, venv

    before_site = [tls.TlsFiles()] if s.tls != "off" else []
    after_site = [tls.AcmeCertificate()] if s.tls == "acme" else []
    # the first venv builds in the background (venv.py) while apt installs: user and
    # directories come first, since it needs them
    return [account.AppUser(), account.Directories(), venv.VenvStart(), packages.Packages(),
            units.ProcessManagerFiles(manager_for(s)), *before_site, site.NginxSite(),
            *after_site, venv.VenvDone()]
