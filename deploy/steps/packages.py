"""Setup step: the Debian packages an app host needs, plus the user's `apt_packages`.

Only missing packages are installed, by the shell program in packages.sh: it waits (bounded
by `apt_lock_wait`) for the dpkg lock a fresh cloud VM's cloud-init or unattended-upgrades
hold after boot, and shows apt's output as it happens.
"""
from __future__ import annotations

from pathlib import Path

from deploy import facts
from deploy.shell import q, scratch
from deploy.steps import Change

# python3-pip-whl: the pip the venv step runs (deploy/remote/prepare.sh); python3-venv would add
# ensurepip, distutils and lib2to3, which the kit does not use.
BASE_PACKAGES = ["nginx", "python3-pip-whl", "curl"]
PROGRAM = Path(__file__).with_name("packages.sh")


def wanted(s) -> list[str]:
    extra = ["supervisor"] if s.process_manager == "supervisor" else []
    tls = {"off": [], "files": ["openssl"], "acme": ["openssl", "certbot"]}[s.tls]
    return list(dict.fromkeys(BASE_PACKAGES + extra + tls + list(s.apt_packages)))


def install_lines(names: list[str], lock_wait: int) -> list[str]:
    """The program's functions, then one call installing `names` (validated Debian names)."""
    return [f"APT_LOG={scratch('apt.log')}", PROGRAM.read_text(),
            f"apt_install {int(lock_wait)} {' '.join(q(n) for n in names)}"]


class Packages:
    name = "packages"

    def __init__(self, names: list[str] | None = None):
        self.names = names  # None: an app host's packages (wanted(s))

    def wanted(self, s) -> list[str]:
        return wanted(s) if self.names is None else self.names

    def probes(self, s):
        return [facts.pkg(p) for p in self.wanted(s)]

    def plan(self, s, f) -> Change:
        missing = [p for p in self.wanted(s) if f.get(f"pkg:{p}") != "installed"]
        if not missing:
            return Change(self.name)
        return Change(self.name, "install " + " ".join(missing),
                      install_lines(missing, s.apt_lock_wait))
