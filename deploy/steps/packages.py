"""Setup step: the Debian packages an app host needs (installed only when missing)."""
from __future__ import annotations

from deploy import facts
from deploy.shell import scratch
from deploy.steps import Change

BASE_PACKAGES = ["nginx", "python3-venv", "curl"]


def wanted(s) -> list[str]:
    extra = ["supervisor"] if s.process_manager == "supervisor" else []
    return BASE_PACKAGES + extra


def install_line(names: list[str]) -> str:
    """apt-get install, refreshing the package lists once if the first attempt fails."""
    args = " ".join(names)
    install = f"apt-get install -y -q --no-install-recommends {args}"
    log = scratch("apt.log")
    return f"{{ {install} || {{ apt-get update -q && {install}; }}; }} >{log} 2>&1 " \
           f"|| {{ tail -n 5 {log}; echo '::error apt-get install {args} failed'; exit 1; }}"


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
        return Change(self.name, "install " + " ".join(missing), [install_line(missing)])
