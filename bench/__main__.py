"""`python -m bench`: the kit's deploy benchmark on sandbox hosts, one run → one table.

Starts 6 sandbox hosts. First the cold figure on bare hosts, in the same run: the kit's first
`fab setup` + `fab deploy` on bench5 against the hand-written Fabric script (bench/handwritten.py)
doing the same on bench6 (bench/cold.py); both are then removed. Then sets up and deploys the
4 bare hosts bench1..bench4 at once (also a cold figure), then on bench1, under a
steady load of 8 clients through nginx, performs in turn: the article's way (`killall
gunicorn; gunicorn -D`), `systemctl restart`, `systemctl reload`, `fab deploy`, `fab rollback`,
a failed deploy, the events that need a new gunicorn master (`fab deploy` with changed
requirements, `fab rollback` across that change, `fab env.set`, `fab restart`); then `fab
deploy` to all 4 hosts under load. Then `fab setup` switches bench1 to `process_manager:
supervisor` and, under the same load: `supervisorctl restart`, `supervisorctl signal HUP`, and
the kit's events again. Also measures no-op `fab setup` and warm code-only `fab deploy` (median
of 5, with where the seconds go, fab's own CPU and the host's), 4 hosts vs 1, and `systemd-analyze
security`. Every figure is printed beside the one of the previous run (the RESULTS.md it replaces). Writes the table to stdout and bench/RESULTS.md, the plot to
bench/deploy-load.png. The hosts are removed at the end (pass or fail) unless --keep.

    .venv/bin/python -m bench [--keep] [--prefix bench] [--out bench]
"""
from __future__ import annotations

import argparse
import datetime
import os
import platform
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

from bench import apps, cold, hosts as H
from bench.events import measure, median
from bench.plot import plot

ROOT = "/srv/flasksample"
SOCK = "/run/flasksample.sock"
ARTICLE_START = f"cd {ROOT}/current && .venv/bin/gunicorn -w 4 serve:app -D --bind unix:{SOCK}"
SETTLE = 2.0  # seconds for all workers of a (re)started gunicorn to have imported the app
TARGETS = {"deploy": 0.8, "noop": 0.4, "fleet": 1.5, "maxlat": 100.0, "exposure": 2.0, "gap": 100.0,
           "cold": 0.7}
BASELINES = {"hand-written Fabric script": 2.0, "pyinfra": 3.5, "Ansible": 9.1}
# The kit's own events: none may stall (longest gap without a good answer) or fail.
KIT_EVENTS = ("fab deploy", "fab rollback", "fab deploy, requirements changed",
              "fab rollback across the requirements change", "fab env.set", "fab restart")


LOG: list[str] = []


def log(msg: str) -> None:
    line = f"[bench {time.strftime('%H:%M:%S')}] {msg}"
    LOG.append(line)
    print(line, file=sys.stderr, flush=True)


def keep(what: str, run: H.FabRun) -> H.FabRun:
    """Record a fab run's output for bench/last-run.log."""
    LOG.append(f"--- {what}: exit {run.rc}, {run.wall:.2f}s\n{run.out.rstrip()}")
    return run


def must(run: H.FabRun, what: str) -> H.FabRun:
    keep(what, run)
    if run.rc != 0:
        raise RuntimeError(f"{what} failed (exit {run.rc}):\n{run.out}")
    return run


def fab_action(hs, *task, config=None):
    def act():
        r = keep(" ".join(task) + " (under load)", H.fab(hs, *task, config=config))
        return r.rc, r.out
    return act


def root_action(h, cmd):
    def act():
        p = h.root(cmd, check=False)
        LOG.append(f"--- {cmd} (under load): exit {p.returncode}\n{(p.stdout + p.stderr).rstrip()}")
        return p.returncode, p.stdout + p.stderr
    return act


def machine_line() -> str:
    cpu = ""
    try:
        cpu = next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{platform.node()}: {os.cpu_count()} cores {cpu}, {mem:.1f} GiB, {platform.platform()}"


CRASH_CMD = ("journalctl --no-pager -o cat -u flasksample.service | "
             "grep -c 'flasksample.service: Main process exited' || true")


# supervisord logs `exited: NAME (exit status N; not expected)` when the program dies by itself;
# a `supervisorctl stop/restart` logs `stopped: NAME (…)` instead.
SUP_CRASH_CMD = "grep -c 'exited: flasksample' /var/log/supervisor/supervisord.log || true"


def _count(hs, cmd) -> list[int]:
    return [int((x.root(cmd, check=False).stdout.strip() or "0").splitlines()[-1]) for x in hs]


def crashes(hs) -> list[int]:
    """How often systemd saw each host's gunicorn master exit (cumulative, from the journal)."""
    return _count(hs, CRASH_CMD)


def sup_crashes(hs) -> list[int]:
    """How often supervisord saw each host's gunicorn master exit by itself (cumulative, its log)."""
    return _count(hs, SUP_CRASH_CMD)


def watched(ev_fn, hs, expected: int = 0, supervisor: bool = False):
    """Run an event; note it when a gunicorn master died during it (its manager then restarts it)."""
    count = sup_crashes if supervisor else crashes
    before = count(hs)
    ev = ev_fn()
    died = [(x.name, a - b) for x, a, b in zip(hs, count(hs), before) if a - b > expected]
    if died:
        ev.note = (ev.note + "; " if ev.note else "") + "gunicorn master exited during the event on " + ", ".join(
            f"{n} ({k}×)" for n, k in died) + (
            " (`exited: flasksample` in supervisord.log; supervisord restarted it)" if supervisor else
            " (`Main process exited` in the journal; systemd restarted it)")
    return ev


# ------------------------------------------------------------------------------------ phases
def article_event(h):
    """Stop the kit's units, run gunicorn by hand as the seed article does, restart it under load."""
    h.root("systemctl stop flasksample.service flasksample.socket")
    h.root(ARTICLE_START)
    h.wait_http("Hello World!")
    time.sleep(SETTLE)
    mode = h.root(f"stat -c '%U:%G %A' {SOCK}").stdout.strip()
    www = h.root(f"runuser -u www-data -- curl -s -o /dev/null -w '%{{http_code}}' --unix-socket {SOCK} http://x/",
                 check=False).stdout.strip()
    h.root(apps.edit_in_place_cmd(ROOT, "article"))  # the article's `git pull`
    try:
        ev = measure("article: killall gunicorn; gunicorn -D", f"killall gunicorn; {ARTICLE_START}",
                     [f"http://{h.address}/"], root_action(h, f"killall gunicorn; {ARTICLE_START}"), "article")
    finally:
        h.root("killall gunicorn 2>/dev/null; for i in $(seq 100); do pgrep -x gunicorn >/dev/null || break; "
               f"sleep 0.1; done; rm -f {SOCK}; systemctl start flasksample.socket flasksample.service")
        h.wait_http("Hello World!")
        time.sleep(SETTLE)  # every worker has imported the code before the next in-place edit
    ev.note = f"socket made by hand: {mode}; www-data connect → HTTP {www or '?'}"
    return ev


def systemctl_event(h, verb: str, tag: str):
    time.sleep(SETTLE)  # workers booted by the previous event must not import the edited file
    h.root(apps.edit_in_place_cmd(ROOT, tag))
    cmd = f"systemctl {verb} flasksample.service"
    return measure(f"systemctl {verb}", cmd, [f"http://{h.address}/"], root_action(h, cmd), tag)


SUP = "supervisor: "


def variants(work, **kw):
    """tag → the fabric.yaml of that app variant, each made once (tags with "req" in them
    also change the requirements)."""
    made: dict[str, str] = {}

    def cfg(tag):
        if tag not in made:
            made[tag] = apps.variant(work, tag, requirements=tag if "req" in tag else "", **kw)
        return made[tag]
    return cfg


def new_master_events(h, url, cfg, back_to, prefix="", supervisor=False, restart=True) -> list:
    """The kit's events that need a new gunicorn master, under load: deploy with changed
    requirements (a new venv), rollback across that change, env.set, fab restart (after an
    in-place edit of the current release, so its new body shows when the new master serves)."""
    events = []
    tag = "s" if supervisor else ""

    def ev(name, command, action, new_tag, **kw):
        log(f"under load: {prefix}{name}")
        events.append(watched(lambda: measure(prefix + name, command, url, action, new_tag, **kw), [h],
                              supervisor=supervisor))

    ev("fab deploy, requirements changed", "fab deploy", fab_action([h], "deploy", config=cfg(f"{tag}req")),
       f"{tag}req")
    ev("fab rollback across the requirements change", "fab rollback",
       fab_action([h], "rollback", config=cfg(f"{tag}req")), back_to)
    ev("fab env.set", "fab env.set BENCH_ENV=1", fab_action([h], "env.set", f"BENCH_ENV={tag}1",
                                                           config=cfg(f"{tag}req")), None, expect_new=False)
    if restart:
        time.sleep(SETTLE)
        h.root(apps.edit_in_place_cmd(ROOT, f"{tag}fabrestart"))
        ev("fab restart", "fab restart", fab_action([h], "restart", config=cfg(f"{tag}req")), f"{tag}fabrestart")
    return events


GUNICORN = "'^/srv/[^ ]*/bin/python[0-9.]* [^ ]*/bin/gunicorn '"
MASTERS_CMD = (f"for p in $(pgrep -f {GUNICORN}); do pgrep -f {GUNICORN} | grep -qx \"$(ps -o ppid= -p $p | tr -d ' ')\" "
               "|| echo $p; done | wc -l")


def supervisor_events(h, work) -> tuple[list, str]:
    """Switch h to process_manager: supervisor with `fab setup`, then measure its events under load.

    Returns the events and a line on the switch. Tags (new bodies): `srestart`, `shup` are
    in-place edits of the current release (s1); `s2` a code-only deploy; rollback goes back to
    the s1 release (whose file says `shup` by then); `sfabrestart` an in-place edit before `fab restart`.
    """
    cfg = variants(work, manager="supervisor")

    url = [f"http://{h.address}/"]
    switch = must(H.fab([h], "setup", config=cfg("s0")), "setup: switch bench1 to supervisor")
    h.wait_http("Hello World!")
    masters = h.root(MASTERS_CMD, check=False).stdout.strip()
    units = " ".join(h.root("systemctl is-active flasksample.socket flasksample.service", check=False).stdout.split())
    switched = (f"{switch.wall:.1f} s; afterwards {masters} gunicorn master(s), "
                f"systemd's flasksample.socket/.service: {units or '?'}")
    must(H.fab([h], "deploy", config=cfg("s1")), "deploy s1 (supervisor)")
    h.wait_http("Hello World! s1")
    events = []

    def ctl(verb, tag):
        time.sleep(SETTLE)  # workers booted by the previous event must not import the edited file
        h.root(apps.edit_in_place_cmd(ROOT, tag))
        cmd = f"supervisorctl {verb} flasksample"
        return measure(SUP + cmd, cmd, url, root_action(h, cmd), tag)

    log("under load: supervisorctl restart")
    ev = watched(lambda: ctl("restart", "srestart"), [h], supervisor=True)
    ev.note = ((ev.note + "; ") if ev.note else "") + (
        "expected to drop requests: under supervisor gunicorn binds its own socket, so between the old master "
        f"closing it and the new one listening nginx has nowhere to connect (longest gap {ev.stats()['gap_ms']:.0f} ms)")
    events.append(ev)
    log("under load: supervisorctl signal HUP")
    events.append(watched(lambda: ctl("signal HUP", "shup"), [h], supervisor=True))
    log("under load: fab deploy (supervisor)")
    events.append(watched(lambda: measure(SUP + "fab deploy", "fab deploy", url,
                                          fab_action([h], "deploy", config=cfg("s2")), "s2"), [h], supervisor=True))
    log("under load: fab rollback (supervisor)")
    events.append(watched(lambda: measure(SUP + "fab rollback", "fab rollback", url,
                                          fab_action([h], "rollback", config=cfg("s2")), "shup"), [h], supervisor=True))
    time.sleep(SETTLE)
    h.root(apps.edit_in_place_cmd(ROOT, "sfabrestart"))
    log("under load: fab restart (supervisor)")
    events.append(watched(lambda: measure(SUP + "fab restart", "fab restart", url,
                                          fab_action([h], "restart", config=cfg("s2")), "sfabrestart"), [h],
                          supervisor=True))
    # back to s1, which says `sfabrestart` by then; fab restart was measured above
    events += new_master_events(h, url, cfg, "sfabrestart", SUP, supervisor=True, restart=False)
    return events, switched


def breakdown(runs: list[H.FabRun], startup: float) -> list[float]:
    """Seconds per part (see PARTS); for several hosts a step counts as its slowest host."""
    steps = [median([r.steps().get(k, 0.0) for r in runs]) for k in STEPS]
    wall = median([r.wall for r in runs])
    live = median([r.live_total() or 0.0 for r in runs])
    return [startup, live - sum(steps), *steps, wall - startup - live, wall]


STEPS = ["lock", "unpack", "venv", "preflight", "switch", "health", "finish"]
PARTS = (["fab start-up (python, fabric, fabfile import; median `fab --list`)",
          "local: pack, ssh connect, upload, round trips (deploy's own total − remote steps)"]
         + [f"remote: {k}" for k in STEPS]
         + ["after 'is live' until exit (wall − start-up − deploy's own total)",
            "**wall clock of `fab deploy` (median)**"])


# ------------------------------------------------------------------------------------ report
def fmt(x, spec=".2f", none="—"):
    return none if x is None else format(x, spec)


def previous_figures(path: Path) -> dict[str, list[str]]:
    """The table rows of the RESULTS.md this run replaces: first cell → the other cells."""
    rows: dict[str, list[str]] = {}
    text = path.read_text() if path.exists() else ""
    for line in text.splitlines():
        if line.startswith("| ") and not line.startswith("|---"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            rows.setdefault(cells[0], [c.split(" (was ")[0] for c in cells[1:]])
    return rows


PREVIOUS: dict[str, list[str]] = {}


def row(name: str, cells: list[str], compare: set[int] | None = None) -> str:
    """A table row whose figures stand beside the previous run's: `now (was before)`."""
    before = PREVIOUS.get(name, [])
    shown = []
    for i, cell in enumerate(cells):
        was = before[i] if i < len(before) else ""
        if was and was != cell and (compare is None or i in compare):
            cell = f"{cell} (was {was})"
        shown.append(cell)
    return f"| {name} | " + " | ".join(shown) + " |"


def event_table(events) -> list[str]:
    out = ["| event | exit | command took s | new code answers after s | requests sent | failed (kinds) | p50 ms | p99 ms | max ms | longest gap without a good answer, ms |",
           "|---|---:|---:|---:|---:|---|---:|---:|---:|---:|"]
    for ev in events:
        st = ev.stats()
        kinds = ", ".join(f"{k}×{v}" for k, v in st["kinds"].items())
        failed = f"{st['failed']}" + (f" ({kinds})" if kinds else "")
        if ev.failed_outside:
            failed += f" +{ev.failed_outside} outside window"
        new = fmt(ev.new_after) if ev.expect_new else ("never (correct)" if ev.new_after is None else f"{ev.new_after:.2f} (WRONG)")
        if ev.expect_new and ev.new_after is None:
            new = "never (within 12 s)"
        out.append(row(ev.name, [str(ev.rc), f"{ev.took:.2f}", new, str(st["sent"]), failed,
                                 f"{st['p50_ms']:.1f}", f"{st['p99_ms']:.1f}", f"{st['max_ms']:.0f}",
                                 f"{st['gap_ms']:.0f}"], compare={1, 2, 4, 7, 8}))
    return out


def render(ctx) -> str:
    L = []
    L.append("# Benchmark: requests dropped and time taken by restarts and deploys")
    L.append("")
    L.append(f"- command: `cd /work/main && make venv && .venv/bin/python -m bench` (as root; ~{ctx['run_s'] / 60:.1f} min)")
    L.append(f"- date: {ctx['date']}; kit: {ctx['rev']}")
    L.append(f"- machine: {ctx['machine']}; hosts: systemd-nspawn sandboxes (Debian 12) on this machine, "
             "so load generator, nginx and gunicorn share its cores")
    lb, la = ctx["load_before"], ctx["load_after"]
    L.append(f"- machine load average (1/5/15 min) at start {lb[0]:.1f}/{lb[1]:.1f}/{lb[2]:.1f}, at end "
             f"{la[0]:.1f}/{la[1]:.1f}/{la[2]:.1f}: other work shares these cores, so times vary between runs")
    L.append(f"- load: {ctx['concurrency']} concurrent clients (bench/load.py: threads, a new connection per request) "
             "on `/` through nginx; failed = refused/reset/timeout (5 s) or 5xx")
    L.append("")
    L.append("## Under load, one event at a time (bench1; \"4 hosts\" row: 4 hosts, 2 clients each)")
    L.append("")
    L.append("Rows without a prefix: the kit's default `process_manager: systemd` (socket-activated gunicorn). "
             "Rows \"supervisor: …\": bench1 after `fab -f FILE setup` switched it to `process_manager: supervisor` "
             f"({ctx['switch']}; gunicorn binds its own socket there); every `fab` run there uses that FILE.")
    L.append("")
    L.append("Every figure that changed since the previous run (the RESULTS.md this one replaced) is "
             "followed by `(was …)`.")
    L.append("")
    L += event_table(ctx["events"])
    L.append("")
    L.append("What the columns mean: *command took* is from the event's start until its command returned "
             "(root commands run over an already open SSH connection, as an operator on the host; `fab` rows "
             "are the whole local CLI run). *New code answers after* is from the event's start until the "
             "first answer to `/` with the new body arrived (all hosts for the 4-host row). Requests, "
             "failures and latency cover every request in flight from the event's start until 0.5 s after "
             "the later of those two moments. *Longest gap*: the longest time in that window during which no "
             "client received a successful answer (a stall or an outage; normal spacing is ~1 ms).")
    L.append("")
    for ev in ctx["events"]:
        if ev.note:
            L.append(f"- {ev.name}: {ev.note}")
    L.append("")
    L.append("## Against the project's targets")
    L.append("")
    L.append("| target | measured | target | measured / target |")
    L.append("|---|---:|---:|---:|")
    for name, val, tgt, unit in ctx["targets"]:
        ratio = "—" if val is None or tgt is None else f"{val / tgt:.2f}"
        L.append(row(name, [f"{fmt(val)}{unit}", "—" if tgt is None else f"≤ {tgt:g}{unit}", ratio], compare={0, 2}))
    L.append("")
    L.append(f"Failed requests during the kit's own events ({', '.join(KIT_EVENTS)}; both managers): "
             f"{ctx['kit_failed']}.")
    L.append("")
    wd = ctx["warm_median"]
    L.append("Warm code-only deploy vs the baselines: " + ", ".join(
        f"{k} {v} s ({wd / v:.2f}×)" for k, v in BASELINES.items()) +
        f"; no-op setup vs pyinfra's 2.6 s: {ctx['noop_median'] / 2.6:.2f}×.")
    L.append("")
    L.append("## Where a warm code-only `fab deploy` spends its time (no load; median of 5 each)")
    L.append("")
    L.append("| part | 1 host, s | 4 hosts, s (slowest host per step) |")
    L.append("|---|---:|---:|")
    for name, one, four in zip(PARTS, ctx["breakdown"], ctx["breakdown4"]):
        L.append(row(name, [f"{one:.2f}", f"{four:.2f}"]))
    L.append("")
    L.append("CPU per warm code-only deploy, 1 host (median of 5; the host's parts from its cgroups' "
             "`cpu.stat`, read over SSH just before and after each deploy):")
    L.append("")
    L.append("| where | CPU s |")
    L.append("|---|---:|")
    for name, val in ctx["cpu"]:
        L.append(row(name, [f"{val:.2f}"]))
    L.append("")
    if ctx["quiet_crashes"]:
        L.append(f"During these {2 * len(ctx['warm_walls'])} deploys without load, a gunicorn master exited "
                 f"{ctx['quiet_crashes']}× (`Main process exited` in the hosts' journals; systemd restarted it and "
                 "every deploy still reported success).")
        L.append("")
    L.append(f"Samples (s): warm deploy {', '.join(f'{x:.2f}' for x in ctx['warm_walls'])}; "
             f"no-op setup {', '.join(f'{x:.2f}' for x in ctx['noop_walls'])}; "
             f"4-host deploy {', '.join(f'{x:.2f}' for x in ctx['fleet_walls'])}; "
             f"`fab --list` {', '.join(f'{x:.2f}' for x in ctx['startup_walls'])}; "
             f"cold on 1 bare host: kit {ctx['cold_kit'].total:.1f} (setup {ctx['cold_kit'].setup:.1f} + deploy "
             f"{ctx['cold_kit'].deploy:.1f} + until `/` answered {ctx['cold_kit'].serving:.1f}; the host's CPU "
             f"{ctx['cold_kit'].host_cpu:.1f} s), hand-written script {ctx['cold_script'].total:.1f} (its run "
             f"{ctx['cold_script'].setup:.1f} + until `/` answered {ctx['cold_script'].serving:.1f}; the host's CPU "
             f"{ctx['cold_script'].host_cpu:.1f} s); "
             f"first setup of 4 bare hosts {ctx['cold_setup']:.1f}, first deploy to 4 (venv built) {ctx['cold_deploy']:.1f}.")
    L.append("")
    if ctx["journald"]:
        L.append(f"journald dropped {ctx['journald']} of the app's log lines on bench1 during the run (rate limit; "
                 "gunicorn's access log goes to the journal, one line per request).")
        L.append("")
    L.append(f"`systemd-analyze security flasksample.service` prints: `{ctx['security_line']}`")
    L.append("")
    L.append("Plot: `bench/deploy-load.png` — each dot one request (latency, log scale) by its start time; red × "
             "failures; orange band: the command running; green dashed line: first answer from the new code.")
    return "\n".join(L) + "\n"


# ------------------------------------------------------------------------------------ main
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    ap.add_argument("--prefix", default="bench", help="sandbox host names: PREFIX1..PREFIX4")
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent), help="where RESULTS.md and the PNG go")
    ap.add_argument("--keep", action="store_true", help="leave the hosts running")
    ap.add_argument("--repeat", type=int, default=5, help="runs for the medians")
    args = ap.parse_args(argv)
    t_run = time.monotonic()
    load_before = os.getloadavg()
    names = [f"{args.prefix}{i}" for i in range(1, 5)]
    cold_names = [f"{args.prefix}5", f"{args.prefix}6"]  # kit, hand-written script: 1 bare host each
    from deploy.sandbox import list_hosts
    left = [h.name for h in list_hosts() if h.name in names + cold_names]
    if left:
        log(f"removing leftovers of an earlier bench run: {', '.join(left)}")
        H.stop(left, log)
    PREVIOUS.update(previous_figures(Path(args.out) / "RESULTS.md"))
    work = Path(tempfile.mkdtemp(prefix="bench-apps-"))
    rev, dirty = H.snapshot_kit(work / "kit")
    rev_line = f"{rev} (committed tree, extracted at the start; `fab` ran from that copy" + (
        "; the working tree had uncommitted kit changes, not measured)" if dirty else ")")
    cdir = H.control_dir()
    hs: list[H.Host] = []
    try:
        log(f"starting sandbox hosts {', '.join(names + cold_names)}")
        started = [H.Host(s, cdir) for s in H.start(names + cold_names, log)]
        hs, (kit1, script1) = started[:4], started[4:]
        h = hs[0]
        try:
            log("cold, 1 bare host: fab setup + fab deploy (bench5), then the hand-written script (bench6)")
            cold_kit = cold.kit_cold(kit1, keep=keep)
            cold_script = cold.script_cold(script1, log=LOG.append)
        finally:
            for x in (kit1, script1):
                x.close()
            H.stop(cold_names, log)
        log("fab setup (4 bare hosts)")
        cold_setup = must(H.fab(hs, "setup"), "setup").wall
        log("fab deploy (4 hosts, builds the venv)")
        cold_deploy = must(H.fab(hs, "deploy"), "first deploy").wall
        h.root("DEBIAN_FRONTEND=noninteractive apt-get install -y -q psmisc >/dev/null")  # killall, for the article's way

        sec = h.root("systemd-analyze security --no-pager flasksample.service", check=False).stdout
        sec_line = next((l.strip() for l in sec.splitlines() if "Overall exposure level" in l), "(not printed)")
        m = re.search(r"level for \S+: (\d+(?:\.\d+)?)", sec_line)
        exposure = float(m.group(1)) if m else None

        log(f"no-op fab setup ×{args.repeat}")
        noop = [must(H.fab([h], "setup"), "no-op setup").wall for _ in range(args.repeat)]
        startup = [H.fab([h], "--list").wall for _ in range(3)]
        crash0 = crashes(hs)
        log(f"warm code-only fab deploy ×{args.repeat}, 1 host and 4 hosts interleaved (same background load)")
        warm, fleet_runs, host_cpu = [], [], []
        for i in range(args.repeat):
            before = h.cpu()
            warm.append(must(H.fab([h], "deploy", config=apps.variant(work, f"warm{i + 1}")), f"warm deploy {i + 1}"))
            after = h.cpu()
            host_cpu.append({k: after[k] - before[k] for k in after})
            fleet_runs.append(must(H.fab(hs, "deploy", config=apps.variant(work, f"fleet{i + 1}")), f"4-host deploy {i + 1}"))
        fleet = [r.wall for r in fleet_runs]

        quiet_crashes = sum(crashes(hs)) - sum(crash0)
        events = []
        log("under load: the article's way")
        events.append(article_event(h))
        log("under load: systemctl restart")
        events.append(watched(lambda: systemctl_event(h, "restart", "restart"), [h]))
        log("under load: systemctl reload")
        events.append(watched(lambda: systemctl_event(h, "reload", "reload"), [h]))
        must(H.fab([h], "deploy", config=apps.variant(work, "v1")), "deploy v1")
        h.wait_http("Hello World! v1")
        log("under load: fab deploy")
        events.append(watched(lambda: measure("fab deploy", "fab deploy", [f"http://{h.address}/"],
                              fab_action([h], "deploy", config=apps.variant(work, "v2")), "v2"), [h]))
        log("under load: fab rollback")
        events.append(watched(lambda: measure("fab rollback", "fab rollback", [f"http://{h.address}/"],
                              fab_action([h], "rollback"), "v1"), [h]))
        log("under load: failed deploy (import raises)")
        bad = watched(lambda: measure("fab deploy, broken release", "fab deploy", [f"http://{h.address}/"],
                      fab_action([h], "deploy", config=apps.variant(work, "broken", broken=True)), "broken",
                      expect_new=False), [h])
        still = h.root("curl -s -m 2 http://127.0.0.1/", check=False).stdout
        bad.note = (f"exit {bad.rc} ({'non-zero, as it must' if bad.rc else 'ZERO: the failure was not reported'}); "
                    f"afterwards / says {still!r}")
        events.append(bad)
        events += new_master_events(h, [f"http://{h.address}/"], variants(work), "v1")
        log("under load: fab deploy to 4 hosts")
        fleet_ev = watched(lambda: measure("fab deploy, 4 hosts", "fab -H a,b,c,d deploy",
                                           [f"http://{x.address}/" for x in hs],
                                           fab_action(hs, "deploy", config=apps.variant(work, "v3")), "v3"), hs)
        events.append(fleet_ev)
        for ev in events[1:]:
            if ev.stats()["failed"] and ev is not events[0]:
                where = [x.name for x in hs] if ev is fleet_ev else [h.name]
                ev.note = (ev.note + "; " if ev.note else "") + "failed requests: " + "; ".join(ev.failure_lines(where))
                for x in hs if ev is fleet_ev else [h]:
                    err = x.root("tail -n 5 /var/log/nginx/error.log 2>/dev/null | cut -c1-220", check=False).stdout.strip()
                    if err:
                        LOG.append(f"--- {x.name} nginx error.log after {ev.name}:\n{err}")

        sup = h.root("journalctl --no-pager -o cat | grep -o 'Suppressed [0-9]* messages from flasksample' "
                     "| awk '{n+=$2} END {print n+0}'", check=False).stdout.strip()
        journald = int(sup) if sup.isdigit() else 0

        log("fab setup: switch bench1 to process_manager: supervisor")
        sup_events, switch = supervisor_events(h, work)
        for ev in sup_events:
            if ev.stats()["failed"]:
                ev.note = (ev.note + "; " if ev.note else "") + "failed requests: " + "; ".join(ev.failure_lines([h.name]))
                err = h.root("tail -n 5 /var/log/nginx/error.log 2>/dev/null | cut -c1-220", check=False).stdout.strip()
                if err:
                    LOG.append(f"--- {h.name} nginx error.log after {ev.name}:\n{err}")
        events += sup_events

        # -- fleet (helper "fleet"): 1/4/8-host deploys behind the load balancer go here, as events
        #    measured with measure(..., [balancer URL], ...) appended to `events`, and their ratios
        #    as rows of ctx["targets"] below.

        warm_median = median([r.wall for r in warm])
        cpu = [("`fab` itself (local: python, imports, packing, SSH)", median([r.cpu for r in warm]))] + [
            (f"host: {part}", median([c[part] for c in host_cpu])) for part in H.Host.CGROUPS]
        kit_evs = [ev for ev in events if ev.name.removeprefix(SUP) in KIT_EVENTS]
        worst = {m: max((ev for ev in kit_evs if ev.name.startswith(SUP) == (m == "supervisor")),
                        key=lambda ev: ev.stats()["gap_ms"]) for m in ("systemd", "supervisor")}
        noop_median = median(noop)
        fleet_ratio = median(fleet) / warm_median
        deploy_ev = events[3]
        ctx = {
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "rev": rev_line, "machine": machine_line(), "concurrency": 8, "events": events,
            "warm_median": warm_median, "noop_median": noop_median,
            "warm_walls": [r.wall for r in warm], "noop_walls": noop, "fleet_walls": fleet,
            "startup_walls": startup, "cold_setup": cold_setup, "cold_deploy": cold_deploy,
            "cold_kit": cold_kit, "cold_script": cold_script,
            "breakdown": breakdown(warm, median(startup)), "security_line": sec_line,
            "breakdown4": breakdown(fleet_runs, median(startup)), "load_before": load_before,
            "load_after": os.getloadavg(), "journald": journald, "quiet_crashes": quiet_crashes, "switch": switch,
            "cpu": cpu, "kit_failed": sum(ev.stats()["failed"] + ev.failed_outside for ev in kit_evs),
            "targets": [
                ("warm code-only `fab deploy`, 1 host (median of 5, wall clock)", warm_median, TARGETS["deploy"], " s"),
                ("no-op `fab setup` (median of 5, wall clock)", noop_median, TARGETS["noop"], " s"),
                ("cold: first `fab setup` + first `fab deploy` (venv built) on 1 bare host / the hand-written "
                 "Fabric script doing the same on another, same run (seconds under Samples)",
                 cold_kit.total / cold_script.total, TARGETS["cold"], "×"),
                ("cold: first `fab setup` + first `fab deploy`, 4 bare hosts at once (no baseline)",
                 cold_setup + cold_deploy, None, " s"),
                *[(f"longest gap without a good answer, worst kit event under {m} ({worst[m].name.removeprefix(SUP)})",
                   worst[m].stats()["gap_ms"], TARGETS["gap"], " ms") for m in worst],
                ("`fab deploy` 4 hosts / 1 host (medians of 5, interleaved)", fleet_ratio, TARGETS["fleet"], "×"),
                ("max request latency during `fab deploy` under load", deploy_ev.stats()["max_ms"], TARGETS["maxlat"], " ms"),
                ("`systemd-analyze security flasksample` exposure", exposure, TARGETS["exposure"], ""),
            ],
        }
        ctx["run_s"] = time.monotonic() - t_run
        text = render(ctx)
        out = Path(args.out)
        (out / "RESULTS.md").write_text(text)
        plot(events, str(out / "deploy-load.png"),
             f"flasksample under {ctx['concurrency']} clients through nginx — {ctx['date']}")
        (out / "last-run.log").write_text("\n".join(LOG) + "\n")
        print(text)
        log(f"wrote {out / 'RESULTS.md'} and {out / 'deploy-load.png'} in {ctx['run_s']:.0f}s")
        return 0
    finally:
        for x in hs:
            x.close()
        if not args.keep:
            H.stop(names, log)
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(cdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
