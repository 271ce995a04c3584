"""`python -m bench.fleet` (as root): deploys behind a load balancer for 1, 4 and 8 web hosts.

Starts 8 web hosts and 1 load balancer (sandboxes), sets them up from `servers:` and deploys
once (venvs built), then for each host count deploys a code-only change — all hosts at once
(switch_batch 0) and rolling one at a time through the balancer (switch_batch 1) — while
4 clients send requests to the balancer (`--no-load`: none, so the hosts' CPU is the
deploy's alone). Per row: fab's wall time, fab's own CPU time (user + sys of the `fab`
process, from getrusage of the child) in total and per web host, the web hosts' CPU during
the deploy per host (cgroup `cpu.stat` of each part, read just before and after, as
bench/__main__.py does for one host), requests sent and failed. `--reps N` repeats each row
(medians). Writes bench/FLEET.md.
"""
from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml

from bench import apps
from bench import hosts as H
from bench.load import Load

COUNTS = (1, 4, 8)
OUT = Path(__file__).resolve().parent / "FLEET.md"
WORKERS = 2
PARTS = {"gunicorn": "gunicorn (reload, hand-over; the app's unit or supervisord)",
         "ssh": "ssh sessions (sshd, the kit's scripts, curl)",
         "host": "whole host"}


def log(msg: str) -> None:
    print(f"[bench.fleet] {msg}", file=sys.stderr, flush=True)


def config(work: Path, tag: str, web: list[str], lb: str, batch: int) -> str:
    path = Path(apps.variant(work, tag))
    raw = yaml.safe_load(path.read_text())
    raw["flasksample"].update({"servers": {"web": web, "lb": [lb]}, "switch_batch": batch,
                               "workers": WORKERS})
    path.write_text(yaml.safe_dump(raw))
    return str(path)


def snapshot(rev: str, dest: Path) -> str:
    """The kit as committed at `rev`, extracted into dest (`--against`); its short id."""
    short = subprocess.run(["git", "-C", str(H.REPO), "rev-parse", "--short", rev],
                           capture_output=True, text=True, check=True).stdout.strip()
    dest.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(H.REPO), "archive", "--format=tar", short, "--",
                              *H.KIT_PATHS], capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    return short


def fab(ssh_config: str, cfg: str, *tasks: str, kit: Path | None = None) -> tuple[int, float, float, str]:
    """(exit code, wall s, fab's CPU s, output) of `fab -f cfg -S ssh_config TASKS` (no -H),
    run from the kit snapshot `kit` (default: this run's, hosts.KIT)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.monotonic()
    p = subprocess.run(H.FAB + ["-f", cfg, "-S", ssh_config, *tasks], cwd=kit or H.KIT,
                       capture_output=True, text=True, timeout=900)
    wall = time.monotonic() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return p.returncode, wall, cpu, p.stdout + p.stderr


def cpu_of(hosts: list[H.Host]) -> dict[str, float]:
    """CPU seconds used so far by each part (PARTS), summed over `hosts`."""
    with ThreadPoolExecutor(max_workers=len(hosts)) as pool:
        used = list(pool.map(lambda h: h.cpu(), hosts))
    return {key: sum(u[label] for u in used) for key, label in PARTS.items()}


def deploy_row(ssh_config, cfg, web: list[H.Host], lb_url: str | None, kit: Path | None = None) -> dict:
    before = cpu_of(web)
    if lb_url:
        with Load(lb_url, concurrency=4, timeout=10.0, max_seconds=300) as load:
            time.sleep(0.5)
            rc, wall, cpu, out = fab(ssh_config, cfg, "deploy", kit=kit)
            time.sleep(0.5)
        s = load.summary()
    else:
        rc, wall, cpu, out = fab(ssh_config, cfg, "deploy", kit=kit)
        s = {"sent": 0, "failed": 0, "max_ms": 0.0}
    after = cpu_of(web)
    if rc:
        log(out[-2000:])
    server = {k: (after[k] - before[k]) / len(web) for k in PARTS}
    return {"rc": rc, "wall": wall, "cpu": cpu, "server": server, **s}


def main() -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.fleet")
    ap.add_argument("--counts", default=",".join(map(str, COUNTS)), help="web host counts, e.g. 1,8")
    ap.add_argument("--batches", default="0,1", help="switch_batch values, e.g. 0")
    ap.add_argument("--reps", type=int, default=1, help="deploys per row (medians)")
    ap.add_argument("--no-load", action="store_true", help="no clients during the deploys")
    ap.add_argument("--against", metavar="REV", help="also deploy with the kit at REV, interleaved "
                    "with HEAD's (REV, HEAD, REV, HEAD …; before each measured deploy, an unmeasured "
                    "one with the same kit and a restart, so gunicorn's master and the workers it "
                    "retires were started by that kit's config): an A/B in one run")
    args = ap.parse_args()
    counts = [int(n) for n in args.counts.split(",")]
    batch_values = [int(b) for b in args.batches.split(",")]
    work = Path(tempfile.mkdtemp(prefix="bench-fleet-"))
    rev, dirty = H.snapshot_kit(work / "kit")
    kits = [(rev, None)]
    if args.against:
        kits.insert(0, (snapshot(args.against, work / "base"), work / "base"))
    n_web = max(counts)
    names = [f"bfw{i}" for i in range(1, n_web + 1)] + ["bflb"]
    log(f"kit {rev}{' (working tree differs)' if dirty else ''}; starting {len(names)} sandbox hosts")
    load_at_start = os.getloadavg()
    started = H.start(names, log)
    control = H.control_dir()
    hosts = [H.Host(s, control) for s in started]
    rows = []
    try:
        ssh_config = started[0].ssh_config
        web, lb = names[:n_web], names[n_web]
        lb_url = None if args.no_load else f"http://{started[n_web].address}/"
        rc, wall, cpu, out = fab(ssh_config, config(work, "warm", web, lb, 0), "setup", "deploy")
        if rc:
            raise SystemExit(f"setup/deploy failed:\n{out[-3000:]}")
        log(f"set up and deployed {n_web} web + 1 lb in {wall:.1f}s")
        for n in counts:
            for batch in batch_values:
                runs: dict[str, list[dict]] = {k: [] for k, _ in kits}
                for i in range(args.reps):
                    for k, kit in kits:
                        if args.against:
                            # the master and the workers a deploy retires must be this kit's: a
                            # deploy with it, then a new master (its config ran in a fresh process)
                            cfg = config(work, f"n{n}b{batch}r{i}{k}w", web[:n], lb, batch)
                            fab(ssh_config, cfg, "deploy", kit=kit)
                            with ThreadPoolExecutor(max_workers=n) as pool:
                                list(pool.map(lambda h: h.root("systemctl restart flasksample"), hosts[:n]))
                            time.sleep(2.0)  # its workers have imported the app
                        cfg = config(work, f"n{n}b{batch}r{i}{k}", web[:n], lb, batch)
                        r = deploy_row(ssh_config, cfg, hosts[:n], lb_url, kit)
                        runs[k].append(r)
                        log(f"kit {k}, {n} web host(s), switch_batch {batch}: exit {r['rc']}, "
                            f"{r['wall']:.2f}s, fab CPU {r['cpu']:.2f}s, host CPU per web host "
                            + ", ".join(f"{p} {v:.2f}s" for p, v in r["server"].items())
                            + f"; {r['failed']} of {r['sent']} requests failed")
                rows += [(k, n, batch, runs[k]) for k, _ in kits]
    finally:
        for h in hosts:
            h.close()
        H.stop(names, log)
    med = statistics.median
    load = "no clients" if args.no_load else "4 clients on the balancer (a new connection per request)"
    lines = [
        "# Deploys behind a load balancer (bench/fleet.py)", "",
        f"date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; kit: {rev}"
        f"{' (+ uncommitted changes)' if dirty else ''}"
        f"{f', interleaved with kit {kits[0][0]}' if args.against else ''}; command: "
        f"`.venv/bin/python -m bench.fleet {' '.join(sys.argv[1:])}`; {n_web} web hosts + 1 lb "
        f"(sandboxes on this machine, sharing its {os.cpu_count()} cores), `workers: {WORKERS}`; "
        f"{load}; medians of {args.reps} deploy(s) per row; machine load average at start "
        f"{'/'.join(f'{x:.1f}' for x in load_at_start)}, at end "
        f"{'/'.join(f'{x:.1f}' for x in os.getloadavg())}.", "",
        "Host CPU: each web host's CPU during the deploy (cgroup `cpu.stat`), per web host; under "
        "load the gunicorn part includes serving the requests.", "",
        "| kit | web hosts | switch_batch | exit | fab deploy, wall s | fab CPU s | fab CPU per host s "
        "| host CPU: gunicorn s | host CPU: ssh + scripts s | host CPU: whole host s "
        "| requests | failed | max ms |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    walls, cpus = {}, {}
    for k, n, batch, runs in rows:
        rc = max(r["rc"] for r in runs)
        wall, cpu = med(r["wall"] for r in runs), med(r["cpu"] for r in runs)
        walls[k, n, batch], cpus[k, n, batch] = wall, cpu
        server = {p: med(r["server"][p] for r in runs) for p in PARTS}
        lines.append(f"| {k} | {n} | {batch} | {rc} | {wall:.2f} | {cpu:.2f} | {cpu / n:.2f} "
                     f"| {server['gunicorn']:.2f} | {server['ssh']:.2f} | {server['host']:.2f} "
                     f"| {sum(r['sent'] for r in runs)} | {sum(r['failed'] for r in runs)} "
                     f"| {max(r['max_ms'] for r in runs):.0f} |")
    lines.append("")
    for (k, n, batch), wall in walls.items():
        if n > 1 and (k, 1, batch) in walls:
            lines.append(f"- kit {k}: {n} hosts / 1 host (switch_batch {batch}): "
                         f"{wall / walls[k, 1, batch]:.2f}×; fab CPU per added host "
                         f"{(cpus[k, n, batch] - cpus[k, 1, batch]) / (n - 1):.3f} s")
    OUT.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0 if all(r["rc"] == 0 for *_, runs in rows for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
