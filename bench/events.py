"""One event under steady load: what clients saw while it happened, and when the new code answered.

`measure()` keeps `concurrency` clients busy through nginx (split over the hosts), waits
`pre` seconds, runs the event (a callable returning (exit code, output)), waits until every
host answers `/` with the new body (or `settle` seconds past the event's end), then `post`
seconds more. Times are seconds from the event's start.

The row's numbers cover the *event window*: every request that was in flight at any moment
between the event's start and 0.5 s after the later of "command returned" and "new code
answered". Failures outside that window are counted too (`failed_outside`), so none hides.
"""
from __future__ import annotations

import statistics
import time
from collections import Counter
from dataclasses import dataclass, field

from bench.load import Load

TAIL = 0.5


@dataclass
class Point:
    t: float          # when the request started, seconds from the event start
    latency: float    # seconds
    failed: bool
    new: bool         # the answer carried the new body
    what: str         # "200", "502", "ConnectionRefusedError", ...
    host: int = 0     # index into the event's URLs


@dataclass
class EventResult:
    name: str
    command: str
    rc: int | None
    took: float                   # seconds the command took to return
    new_after: float | None       # seconds until every host answered with the new body
    expect_new: bool
    points: list[Point] = field(default_factory=list)
    window_end: float = 0.0
    out: str = ""
    note: str = ""
    failed_outside: int = 0

    def in_window(self) -> list[Point]:
        return [p for p in self.points if p.t <= self.window_end and p.t + p.latency >= 0.0]

    def failure_lines(self, hosts: list[str], limit: int = 6) -> list[str]:
        """Where and when requests failed: host, start time, latency, kind (first `limit`)."""
        bad = [p for p in self.points if p.failed]
        out = [f"{hosts[p.host] if p.host < len(hosts) else p.host} t={p.t:+.3f}s "
               f"({p.latency * 1000:.0f} ms) {p.what}" for p in bad[:limit]]
        return out + ([f"… {len(bad) - limit} more"] if len(bad) > limit else [])

    def longest_gap(self) -> float:
        """Longest time, overlapping the window, in which no client got a successful answer."""
        done = sorted(p.t + p.latency for p in self.points if not p.failed)
        best = 0.0
        for a, b in zip(done, done[1:]):
            if b >= 0.0 and a <= self.window_end:
                best = max(best, b - a)
        return best

    def stats(self) -> dict:
        pts = self.in_window()
        lat = sorted(p.latency for p in pts) or [0.0]

        def pct(q):
            return lat[min(len(lat) - 1, int(q * len(lat)))] * 1000

        kinds = Counter(p.what for p in pts if p.failed)
        return {"gap_ms": self.longest_gap() * 1000, "sent": len(pts), "failed": sum(kinds.values()), "kinds": dict(kinds.most_common()),
                "p50_ms": pct(0.50), "p99_ms": pct(0.99), "max_ms": lat[-1] * 1000,
                "rate": len(pts) / max(self.window_end, 1e-9)}


def _what(s) -> str:
    return str(s.status) if s.status is not None else (s.error or "error")


def measure(name: str, command: str, urls: list[str], action, new_tag: str | None, *,
            expect_new: bool = True, concurrency: int = 8, pre: float = 1.0, post: float = 1.0,
            settle: float = 12.0) -> EventResult:
    per = max(1, concurrency // len(urls))
    loads = [Load(u, concurrency=per, keep_body=True, max_seconds=pre + settle + 120, timeout=5.0) for u in urls]
    marker = f"Hello World! {new_tag}" if new_tag else None
    seen: list[float | None] = [None] * len(loads)
    scanned = [0] * len(loads)

    def scan(t_ev: float) -> None:
        for i, load in enumerate(loads):
            samples = load.samples
            n = len(samples)
            for s in samples[scanned[i]:n]:
                done = load.t0 + s.start + s.latency - t_ev
                if marker and s.status == 200 and s.body == marker and done >= 0:
                    if seen[i] is None or done < seen[i]:
                        seen[i] = done
            scanned[i] = n

    for load in loads:
        load.__enter__()
    try:
        time.sleep(pre)
        t_ev = time.monotonic()
        rc, out = action()
        took = time.monotonic() - t_ev
        deadline = time.monotonic() + (settle if expect_new else 1.0)
        while time.monotonic() < deadline:
            scan(t_ev)
            if expect_new and all(x is not None for x in seen):
                break
            time.sleep(0.05)
        time.sleep(post)
    finally:
        for load in loads:
            load.__exit__(None, None, None)
    scan(t_ev)
    new_after = max(seen) if marker and all(x is not None for x in seen) else None
    points = []
    for i, load in enumerate(loads):
        for s in load.samples:
            points.append(Point(load.t0 + s.start - t_ev, s.latency, s.failed,
                                bool(marker) and s.status == 200 and s.body == marker, _what(s), i))
    points.sort(key=lambda p: p.t)
    res = EventResult(name, command, rc, took, new_after, expect_new, points, out=out)
    res.window_end = max(took, new_after or 0.0) + TAIL
    inside = set(map(id, res.in_window()))
    res.failed_outside = sum(1 for p in points if p.failed and id(p) not in inside)
    return res


def median(xs):
    return statistics.median(xs) if xs else float("nan")
