"""`fab setup`: read the host's facts in one round trip, plan each step, apply only the diff.

A host that is already set up costs one SSH command and reports every step unchanged.
`fab setup --check` stops after the plan: it prints what would change, with a unified diff
of every file setup would write, and changes nothing.
"""
from __future__ import annotations

import base64
import difflib
import time
from concurrent.futures import ThreadPoolExecutor

from deploy import audit, facts, report, tls
from deploy.lock import holder
from deploy.runner import Remote
from deploy.settings import Settings
from deploy.shell import q, script, step
from deploy.steps import Change, ordered


def plan(s: Settings, f: dict[str, str], steps=None) -> list[Change]:
    return [st.plan(s, f) for st in steps or ordered(s)]


def apply_script(changes: list[Change], audit_line: str = "") -> str:
    """One script applying every changed step, with a timing marker before each, then
    `audit_line` (the audit entry, written once every step went through)."""
    parts: list[str] = []
    if any(ch.stdin for ch in changes if ch.changed):
        parts.append("exec 3<&0 </dev/null")  # only the step that asked for stdin reads it
    for ch in changes:
        if ch.changed:
            parts.append(step(ch.step))
            parts.extend(ch.lines)
    return script(parts, audit_line)


def audit_what(changes: list[Change]) -> str:
    return "setup: " + ", ".join(ch.step for ch in changes if ch.changed)


def read_facts(remote: Remote, s: Settings, steps=None, extra=()) -> dict[str, str]:
    """The host's answers to every probe of `steps` (and `extra`), in one round trip.

    While the host answers (its login and the script take ~0.1 s), this thread plans once
    with no facts: every file a step may write is rendered, so jinja2 has compiled their
    templates when the real plan runs on the answers (the compile was on the critical path)."""
    steps = steps or ordered(s)
    probes = [p for st in steps for p in st.probes(s)] + list(extra)
    with ThreadPoolExecutor(max_workers=1) as pool:
        reading = pool.submit(remote.must, facts.read_script(probes), "reading the host's state")
        try:
            plan(s, {}, steps)
        finally:
            out = reading.result()
    return facts.parse("\n".join(out.lines))


def setup(remote: Remote, s: Settings, steps=None, extra=()) -> dict[str, str]:
    """`steps`: the steps to run (default: an app host's, `deploy.steps.ordered(s)`);
    `extra`: probes the caller needs next, read in the same round trip. Returns the facts."""
    started = time.time()
    f = read_facts(remote, s, steps, extra)
    changes = plan(s, f, steps)
    timings: dict[str, float] = {}
    if any(ch.changed for ch in changes):
        entry = audit.append_line(s, holder(), audit_what(changes))
        stdin = "".join(ch.stdin for ch in changes if ch.changed)
        out = remote.must(apply_script(changes, entry), "setup", stdin=stdin or None,
                          progress=lambda text: report.host_say(remote.label, f"  {text}"))
        timings = dict(out.steps)
    for ch in changes:
        report.host_say(remote.label, report.step_line(
            ch.step, ch.changed, ch.summary, timings.get(ch.step)))
    n = sum(ch.changed for ch in changes)
    verdict = f"{n} step(s) changed" if n else "no change"
    report.host_say(remote.label, f"setup done: {verdict} ({time.time() - started:.2f}s)")
    if tls.advice(s):
        report.host_say(remote.label, f"note: {tls.advice(s)}")
    return f


def read_files_script(paths: list[str]) -> str:
    """Prints `path<TAB>base64 of its content` for each of `paths` that is a file."""
    return script([f"if [ -f {q(p)} ]; then printf '%s\\t%s\\n' {q(p)} \"$(base64 -w0 {q(p)})\"; fi"
                   for p in paths])


def file_diff(path: str, old: str | None, new: str) -> list[str]:
    """The unified diff from the host's file (None: missing) to what setup would write."""
    return list(difflib.unified_diff(
        (old or "").splitlines(keepends=True), new.splitlines(keepends=True),
        fromfile=f"{path} (on the host)" if old is not None else "/dev/null",
        tofile=f"{path} (setup would write)"))


def check(remote: Remote, s: Settings, steps=None) -> list[Change]:
    """Print what setup would change on this host, diffs included; change nothing."""
    changes = plan(s, read_facts(remote, s, steps), steps)
    paths = [path for ch in changes for path, _ in ch.files]
    current: dict[str, str] = {}
    if paths:
        out = remote.must(read_files_script(paths), "reading the files setup would write")
        for line in out.lines:
            path, _, data = line.partition("\t")
            current[path] = base64.b64decode(data).decode(errors="replace")
    for ch in changes:
        state = f"would change  {ch.summary}" if ch.changed else "unchanged"
        report.host_say(remote.label, f"{ch.step:<16} {state}")
        for path, content in ch.files:
            for line in file_diff(path, current.get(path), content):
                report.host_say(remote.label, "    " + line.rstrip("\n"))
    n = sum(ch.changed for ch in changes)
    report.host_say(remote.label, f"setup --check: {n} step(s) would change" if n
                    else "setup --check: no change")
    return changes
