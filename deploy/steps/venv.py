"""Setup steps: a bare host's first venv, built in the background while apt installs.

A cold host spends most of its first setup + deploy in apt and in building the venv; they do
not depend on each other, so setup starts the venv `fab deploy` would build now (the same
pinned requirements, the same `venvs/<hash>`), right after the app user and its directories
exist, and waits for it at its end (`venv-done`). The build is deploy/remote/venv.sh's, the one
prepare runs: the first deploy finds the venv complete and reuses it. A failed build is a
warning only: deploy builds again and reports why. A host whose venv is complete, or an app
whose requirements cannot be read here, plans nothing.
"""
from __future__ import annotations

import functools
import subprocess
from pathlib import Path

from deploy import facts, layout, requirements
from deploy.errors import KitError
from deploy.shell import q, remote_file, scratch, write_file
from deploy.steps import Change, packages

PIP_WHEEL = "python3-pip-whl"  # the pip venv.sh runs


def first_packages(s) -> list[str]:
    """Installed before the build starts, when missing: its pip, and the user's apt_packages
    (a build dependency or the python itself may be one of them); the rest (nginx) meanwhile.
    When only the pip is missing, the build waits for it instead (pip_wheel_wait): the packages
    step installs it with nginx in one apt run, not two (an apt run costs ~1 s even for one
    small package)."""
    return list(dict.fromkeys([PIP_WHEEL, *s.apt_packages]))


@functools.lru_cache(maxsize=8)
def _pinned(app_dir: Path, setting: str, python: str) -> tuple[str, str] | None:
    out = subprocess.run(["git", "-C", str(app_dir), "rev-parse", "--show-toplevel"], capture_output=True)
    top = out.stdout.decode().strip() if out.returncode == 0 else ""
    if top:
        rel = app_dir.resolve().relative_to(Path(top).resolve()).as_posix()
        prefix = "" if rel == "." else rel + "/"

        def read(name: str) -> bytes | None:
            out = subprocess.run(["git", "-C", top, "show", f"HEAD:{prefix}{name}"], capture_output=True)
            return out.stdout if out.returncode == 0 else None
    else:
        def read(name: str) -> bytes | None:
            path = app_dir / name
            return path.read_bytes() if path.is_file() else None
    try:
        text, _ = requirements.pinned(read, setting)
    except (KitError, OSError, ValueError):
        return None
    return text, requirements.requirements_hash(text.encode(), python)


def pinned(s) -> tuple[str, str] | None:
    """(pinned requirements, their hash) as `fab deploy` would ship them now (package.build:
    the commit's files in a git checkout, else the directory's); None when unreadable."""
    return _pinned(Path(s.local_app_dir), s.requirements, s.python)


def _complete(s, req_hash: str) -> str:
    return f"{layout.venv_dir(s, req_hash)}/.complete"


def _wanted(s, f) -> tuple[str, str] | None:
    """The venv to build, or None (complete already, or nothing to build)."""
    want = pinned(s)
    if want is None or f.get(f"exists:{_complete(s, want[1])}") == "yes":
        return None
    return want


class VenvStart:
    name = "venv"

    def probes(self, s):
        want = pinned(s)
        return [facts.pkg(p) for p in first_packages(s)] + ([facts.exists(_complete(s, want[1]))] if want else [])

    def plan(self, s, f) -> Change:
        want = _wanted(s, f)
        if want is None:
            return Change(self.name)
        text, req_hash = want
        reqs = f"{layout.venvs_dir(s)}/.{req_hash}.requirements.txt"
        lines, wait = [], ""
        missing = [p for p in first_packages(s) if f.get(f"pkg:{p}") != "installed"]
        if missing == [PIP_WHEEL]:
            wait = "pip_wheel_wait $$ && "
        elif missing:
            lines += packages.install_lines(missing, s.apt_lock_wait)
        lines += [f"APP_USER={q(s.app_user)} PYTHON={q(s.python)} VENVS={q(layout.venvs_dir(s))} "
                  f"CURRENT={q(layout.current_link(s))}",
                  remote_file("venv.sh"),
                  write_file(reqs, text),
                  f"{{ {wait}venv_ensure {q(layout.venv_dir(s, req_hash))} {q(reqs)} {q(scratch('venv.log'))}; }} "
                  f"> {q(scratch('venv.out'))} 2>&1 &",
                  "kit_venv_pid=$!"]
        return Change(self.name, f"build venv {req_hash} in the background", lines)


class VenvDone:
    """Waits for VenvStart's build (planned from the same facts, so both or neither run)."""

    name = "venv-done"

    def probes(self, s):
        return VenvStart().probes(s)

    def plan(self, s, f) -> Change:
        want = _wanted(s, f)
        if want is None:
            return Change(self.name)
        reqs = f"{layout.venvs_dir(s)}/.{want[1]}.requirements.txt"
        return Change(self.name, f"venv {want[1]} built", [
            "if ! wait \"$kit_venv_pid\"; then",
            f"  echo \"::progress warning: the venv did not build (fab deploy builds it again and says why): "
            f"$(tail -n 1 {q(scratch('venv.log'))} 2>/dev/null)\"",
            "fi",
            f"rm -f {q(reqs)}"])
