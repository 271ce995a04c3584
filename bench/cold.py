"""Cold setup + first deploy on bare hosts: the kit against the hand-written script, same run.

The kit's cold figure is its first `fab setup` plus first `fab deploy` (the venv built) on a
bare sandbox host; the baseline is bench/handwritten.py doing the same by hand on another bare
host. Both are timed until `/` answers from this machine. `python -m bench` runs one of each;
this module alone runs them interleaved, to compare kit revisions with each other and with the
script on a shared machine:

    .venv/bin/python -m bench.cold [--rounds 3] [--kit REV ...] [--no-script]

Every round starts one bare host per variant (in parallel), runs the variants one after the
other in a rotated order, and removes the hosts.
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from bench import hosts as H
from bench.events import median

SCRIPT = "hand-written Fabric script"
WHOLE = "whole host"  # H.Host.CGROUPS


@dataclass
class Cold:
    what: str
    setup: float  # the script's run for the baseline
    deploy: float  # 0 for the baseline
    serving: float  # after the last command returned, until `/` answered
    steps: str = ""  # the kit deploy's remote steps, as fab printed them
    host_cpu: float = 0.0  # CPU seconds the whole host used meanwhile (its cgroups' cpu.stat)

    @property
    def total(self) -> float:
        return self.setup + self.deploy + self.serving


def wait_answer(address: str, contains: str = "Hello World!", timeout: float = 60) -> float:
    """Seconds until http://address/ answers 200 with `contains`, polled from this machine."""
    t = time.monotonic()
    while time.monotonic() - t < timeout:
        try:
            with urllib.request.urlopen(f"http://{address}/", timeout=2) as r:
                if r.status == 200 and contains in r.read().decode(errors="replace"):
                    return time.monotonic() - t
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"http://{address}/ did not answer {contains!r} within {timeout:.0f}s")


def setup_steps(out: str) -> dict[str, float]:
    """`[host] packages  changed  install … (12.34s)` lines of fab setup → {setup:step: seconds}."""
    return {f"setup:{m.group(1)}": float(m.group(2)) for m in re.finditer(
        r"^\[[^]]+\] ([a-z-]+) +changed .*\((\d+\.\d+)s\)$", out, re.M)}


def kit_cold(h: H.Host, kit: Path | None = None, what: str = "kit", keep=lambda what, run: run) -> Cold:
    """The kit's first `fab setup` and `fab deploy` on the bare host h."""
    runs = []
    cpu0 = h.cpu()[WHOLE]
    for task in ("setup", "deploy"):
        r = keep(f"{what}: first {task} (bare host)", H.fab([h], task, kit=kit))
        if r.rc != 0:
            raise RuntimeError(f"{what}: first {task} failed (exit {r.rc}):\n{r.out}")
        runs.append(r)
    steps = ", ".join(f"{k} {v:.1f}" for k, v in {**setup_steps(runs[0].out), **runs[1].steps()}.items())
    serving = wait_answer(h.address)
    return Cold(what, runs[0].wall, runs[1].wall, serving, steps, h.cpu()[WHOLE] - cpu0)


def script_cold(h: H.Host, log=lambda line: None) -> Cold:
    """bench/handwritten.py on the bare host h, deploying the kit snapshot's app/."""
    argv = [sys.executable, "-m", "bench.handwritten", "-S", h.ssh_config, h.name, str(H.KIT / "app")]
    cpu0 = h.cpu()[WHOLE]
    t = time.monotonic()
    p = subprocess.run(argv, cwd=H.REPO, capture_output=True, text=True, timeout=600)
    wall = time.monotonic() - t
    log(f"--- {SCRIPT} (bare host): exit {p.returncode}, {wall:.2f}s\n{(p.stdout + p.stderr).rstrip()}")
    if p.returncode != 0:
        raise RuntimeError(f"{SCRIPT} failed (exit {p.returncode}):\n{p.stdout}{p.stderr}")
    serving = wait_answer(h.address)
    return Cold(SCRIPT, wall, 0.0, serving, host_cpu=h.cpu()[WHOLE] - cpu0)


def load() -> str:
    return "/".join(f"{x:.1f}" for x in os.getloadavg())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.cold", description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--kit", action="append", default=[], metavar="REV",
                    help="a kit revision to time (repeatable; default: HEAD)")
    ap.add_argument("--no-script", action="store_true", help="only the kit revisions")
    ap.add_argument("--prefix", default="cold")
    args = ap.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="bench-cold-"))
    H.snapshot_kit(work / "HEAD")
    kits = {}
    for rev in args.kit or ["HEAD"]:
        short = H.extract_kit(rev, work / rev.replace("/", "_"))
        kits[f"kit {rev} ({short})"] = work / rev.replace("/", "_")
    variants = list(kits) + ([] if args.no_script else [SCRIPT])
    cdir = H.control_dir()
    results: dict[str, list[Cold]] = {v: [] for v in variants}
    print(f"load before {load()}", flush=True)
    for rnd in range(args.rounds):
        names = [f"{args.prefix}{rnd + 1}{chr(97 + i)}" for i in range(len(variants))]
        order = variants[rnd % len(variants):] + variants[:rnd % len(variants)]
        hs = [H.Host(s, cdir) for s in H.start(names, lambda m: None)]
        try:
            for v, h in zip(order, hs):
                c = script_cold(h) if v == SCRIPT else kit_cold(h, kits[v], v)
                results[v].append(c)
                print(f"round {rnd + 1} {v}: {c.total:.2f}s (setup {c.setup:.2f} + deploy {c.deploy:.2f} "
                      f"+ until serving {c.serving:.2f}); host CPU {c.host_cpu:.1f}s"
                      f"{'; ' + c.steps if c.steps else ''}; load {load()}", flush=True)
        finally:
            H.stop(names, print)
    base = median([c.total for c in results[variants[0]]])
    print(f"\nmedians of {args.rounds} (load now {load()}):")
    script = median([c.total for c in results[SCRIPT]]) if SCRIPT in results else None
    for v, cs in results.items():
        m = median([c.total for c in cs])
        print(f"  {v}: {m:.2f}s, host CPU {median([c.host_cpu for c in cs]):.1f}s  (setup {median([c.setup for c in cs]):.2f}, deploy "
              f"{median([c.deploy for c in cs]):.2f}); ×{m / base:.2f} of the first"
              + (f", ×{m / script:.2f} of the script" if script else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
