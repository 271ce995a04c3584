"""bench/deploy-load.png: per event, each request's latency over time, failures marked."""
from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def plot(events, path: str, title: str) -> None:
    n = len(events)
    cols = 2
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(13, 3.1 * rows), squeeze=False)
    for ax, ev in zip(axes.flat, events):
        st = ev.stats()
        ok_old = [p for p in ev.points if not p.failed and not p.new]
        ok_new = [p for p in ev.points if not p.failed and p.new]
        bad = [p for p in ev.points if p.failed]
        ax.scatter([p.t for p in ok_old], [p.latency * 1000 for p in ok_old], s=2, c="tab:blue",
                   alpha=0.35, linewidths=0, label="ok (old code)", rasterized=True)
        ax.scatter([p.t for p in ok_new], [p.latency * 1000 for p in ok_new], s=2, c="tab:green",
                   alpha=0.35, linewidths=0, label="ok (new code)", rasterized=True)
        if bad:
            ax.scatter([p.t for p in bad], [max(p.latency * 1000, 0.2) for p in bad], s=14, c="red",
                       marker="x", linewidths=0.8, label=f"failed ({len(bad)})")
        ax.axvspan(0, ev.took, color="orange", alpha=0.15, label="command running")
        if ev.new_after is not None:
            ax.axvline(ev.new_after, color="green", lw=1, ls="--", label=f"new code at {ev.new_after:.2f}s")
        ax.axhline(100, color="grey", lw=0.6, ls=":")
        ax.set_yscale("log")
        ax.set_ylim(0.3, 6000)
        ax.set_xlim(min(p.t for p in ev.points) if ev.points else -1, max(ev.window_end + 1.0, 3))
        ax.set_title(f"{ev.name}: {st['failed']} failed / {st['sent']} sent, max {st['max_ms']:.0f} ms",
                     fontsize=9)
        ax.set_xlabel("seconds from event start", fontsize=8)
        ax.set_ylabel("latency ms (log)", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=6, loc="upper left", markerscale=3, ncol=2)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.4 / (3.1 * rows)))  # room for the title
    fig.savefig(path, dpi=90)
    plt.close(fig)
