"""`python -m bench.fleet` (as root): deploys behind a load balancer for 1, 4 and 8 web hosts.

Starts 8 web hosts and 1 load balancer (sandboxes), sets them up from `servers:` and deploys
once (venvs built), then for each host count deploys a code-only change twice — all hosts at
once (switch_batch 0) and rolling one at a time through the balancer (switch_batch 1) — while
4 clients send requests to the balancer. Per row: fab's wall time, fab's own CPU time (user +
sys of the `fab` process, from getrusage of the child) in total and per web host, requests
sent and failed. Writes bench/FLEET.md.
"""
from __future__ import annotations

import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from bench import apps
from bench import hosts as H
from bench.load import Load

COUNTS = (1, 4, 8)
OUT = Path(__file__).resolve().parent / "FLEET.md"


def log(msg: str) -> None:
    print(f"[bench.fleet] {msg}", file=sys.stderr, flush=True)


def config(work: Path, tag: str, web: list[str], lb: str, batch: int) -> str:
    path = Path(apps.variant(work, tag))
    raw = yaml.safe_load(path.read_text())
    raw["flasksample"].update({"servers": {"web": web, "lb": [lb]}, "switch_batch": batch,
                               "workers": 2})
    path.write_text(yaml.safe_dump(raw))
    return str(path)


def fab(ssh_config: str, cfg: str, *tasks: str) -> tuple[int, float, float, str]:
    """(exit code, wall s, fab's CPU s, output) of `fab -f cfg -S ssh_config TASKS` (no -H)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.monotonic()
    p = subprocess.run(H.FAB + ["-f", cfg, "-S", ssh_config, *tasks], cwd=H.KIT,
                       capture_output=True, text=True, timeout=900)
    wall = time.monotonic() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return p.returncode, wall, cpu, p.stdout + p.stderr


def main() -> int:
    work = Path(tempfile.mkdtemp(prefix="bench-fleet-"))
    rev, dirty = H.snapshot_kit(work / "kit")
    names = [f"bfw{i}" for i in range(1, 9)] + ["bflb"]
    log(f"kit {rev}{' (working tree differs)' if dirty else ''}; starting {len(names)} sandbox hosts")
    started = H.start(names, log)
    rows = []
    try:
        ssh_config = started[0].ssh_config
        web, lb = names[:8], names[8]
        lb_url = f"http://{started[8].address}/"
        rc, wall, cpu, out = fab(ssh_config, config(work, "warm", web, lb, 0), "setup", "deploy")
        if rc:
            raise SystemExit(f"setup/deploy failed:\n{out[-3000:]}")
        log(f"set up and deployed 8 web + 1 lb in {wall:.1f}s")
        for n in COUNTS:
            for batch in (0, 1):
                cfg = config(work, f"n{n}b{batch}", web[:n], lb, batch)
                with Load(lb_url, concurrency=4, timeout=10.0, max_seconds=300) as load:
                    time.sleep(0.5)
                    rc, wall, cpu, out = fab(ssh_config, cfg, "deploy")
                    time.sleep(0.5)
                s = load.summary()
                rows.append((n, batch, rc, wall, cpu, s["sent"], s["failed"], s["max_ms"]))
                log(f"{n} web host(s), switch_batch {batch}: exit {rc}, {wall:.2f}s, fab CPU {cpu:.2f}s, "
                    f"{s['failed']} of {s['sent']} requests failed")
                if rc:
                    log(out[-2000:])
    finally:
        H.stop(names, log)
    lines = [
        "# Deploys behind a load balancer (bench/fleet.py)", "",
        f"date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; kit: {rev}"
        f"{' (+ uncommitted changes)' if dirty else ''}; 8 web hosts + 1 lb (sandboxes on this "
        "machine), 4 clients on the balancer (a new connection per request), one run.", "",
        "| web hosts | switch_batch | exit | fab deploy, wall s | fab CPU s | fab CPU per host s | requests | failed | max ms |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for n, batch, rc, wall, cpu, sent, failed, mx in rows:
        lines.append(f"| {n} | {batch} | {rc} | {wall:.2f} | {cpu:.2f} | {cpu / n:.2f} | {sent} | {failed} | {mx:.0f} |")
    OUT.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0 if all(r[2] == 0 for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
