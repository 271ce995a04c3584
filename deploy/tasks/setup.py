"""`fab setup`: read the host's facts in one round trip, plan each step, apply only the diff.

A host that is already set up costs one SSH command and reports every step unchanged.
"""
from __future__ import annotations

import time

from deploy import facts, report
from deploy.runner import Remote
from deploy.settings import Settings
from deploy.shell import script, step
from deploy.steps import Change, ordered


def plan(s: Settings, f: dict[str, str], steps=None) -> list[Change]:
    return [st.plan(s, f) for st in steps or ordered(s)]


def apply_script(changes: list[Change]) -> str:
    """One script applying every changed step, with a timing marker before each."""
    parts: list[str] = []
    for ch in changes:
        if ch.changed:
            parts.append(step(ch.step))
            parts.extend(ch.lines)
    return script(parts)


def read_facts(remote: Remote, s: Settings, steps=None) -> dict[str, str]:
    probes = [p for st in steps or ordered(s) for p in st.probes(s)]
    out = remote.must(script(facts.probe_script(probes)), "reading the host's state")
    return facts.parse("\n".join(out.lines))


def setup(remote: Remote, s: Settings, steps=None) -> list[Change]:
    """`steps`: the steps to run (default: an app host's, `deploy.steps.ordered(s)`)."""
    started = time.time()
    changes = plan(s, read_facts(remote, s, steps), steps)
    timings: dict[str, float] = {}
    if any(ch.changed for ch in changes):
        out = remote.must(apply_script(changes), "setup",
                          progress=lambda text: report.host_say(remote.label, f"  {text}"))
        timings = dict(out.steps)
    for ch in changes:
        report.host_say(remote.label, report.step_line(
            ch.step, ch.changed, ch.summary, timings.get(ch.step)))
    n = sum(ch.changed for ch in changes)
    verdict = f"{n} step(s) changed" if n else "no change"
    report.host_say(remote.label, f"setup done: {verdict} ({time.time() - started:.2f}s)")
    return changes
