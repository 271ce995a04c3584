"""Setup step: the process manager's config files (verified before they go live) and its state.

A file whose hash differs from the rendered template is rewritten, so a hand-edited or
outdated unit is detected and replaced; then the manager enables and starts what is not.
A manager the host used before (switching systemd <-> supervisor) is stopped and its
config for the app removed, so exactly one gunicorn runs.
"""
from __future__ import annotations

import hashlib

from deploy import facts
from deploy.managers import other_managers
from deploy.shell import scratch, write_file
from deploy.steps import Change


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def changed_files(files, f) -> list:
    return [mf for mf in files if f.get(f"sha:{mf.path}") != sha256(mf.content)]


class ProcessManagerFiles:
    def __init__(self, manager):
        self.manager = manager
        self.name = f"{manager.NAME}-units"

    def probes(self, s):
        probes = [facts.sha(path) for path in self.manager.paths(s)] + self.manager.probes(s)
        return probes + [m.installed_probe(s) for m in other_managers(s)]

    def plan(self, s, f) -> Change:
        lines, what = [], []
        for other in other_managers(s):
            if f.get(other_probe_key := other.installed_probe(s).key) == "yes":
                lines += other.remove(s)
                what.append(f"remove {other.NAME} config ({other_probe_key.split(':', 1)[1]})")
        files = self.manager.files(s)
        changed = changed_files(files, f)
        if changed:
            stage = scratch("stage")
            staged = [f"{stage}/{mf.path.rsplit('/', 1)[1]}" for mf in files]
            lines.append(f"rm -rf {stage} && mkdir -p {stage}")
            lines += [write_file(path, mf.content, mf.mode) for path, mf in zip(staged, files)]
            lines.append(self.manager.verify(s, staged))
            lines += [write_file(mf.path, mf.content, mf.mode) for mf in changed]
            lines.append(f"rm -rf {stage}")
            what.append("write " + " ".join(mf.path for mf in changed))
        activate = self.manager.activate(s, f, {mf.path for mf in changed})
        if activate and not changed:
            what.append("; ".join(activate))
        lines += activate
        if not lines:
            return Change(self.name)
        return Change(self.name, ", ".join(what) or "unchanged", lines,
                      [(mf.path, mf.content) for mf in changed])
