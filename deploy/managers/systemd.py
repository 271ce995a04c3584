"""gunicorn under systemd: `<app>.socket` (socket activation) + a Type=notify `<app>.service`.

Reload is HUP (new workers import the release `current` points to). A new venv or a new
environment needs a new master: the kit hands over (gunicorn's USR2, deploy/kit/handover.py)
so the old master serves until the new one's workers are ready — no stall; `systemctl
restart` also drops nothing (the socket queues connections) but stalls them while it boots.
The shell side (start, reload, hand-over, logs, processes, the sandboxed preflight boot) is
deploy/remote/systemd.sh.
"""
from __future__ import annotations

from deploy import appcmd, facts, gunicorn, layout, templates
from deploy.managers.base import ManagedFile
from deploy.shell import fail, q, scratch, write_file

NAME = "systemd"


def units(s) -> tuple[str, str]:
    return f"{s.app_name}.socket", f"{s.app_name}.service"


def paths(s) -> list[str]:
    return [layout.unit_path(s, "socket"), layout.unit_path(s, "service")] + [
        layout.process_unit(s, name) for name in s.processes]


def files(s) -> list[ManagedFile]:
    return [
        ManagedFile(layout.unit_path(s, "socket"), templates.render("systemd/app.socket.j2", s)),
        ManagedFile(layout.unit_path(s, "service"), templates.render("systemd/app.service.j2", s)),
    ] + [ManagedFile(layout.process_unit(s, name), templates.render(
        "systemd/process.service.j2", s, name=name, command=command))
        for name, command in s.processes.items()]


def verify(s, staged: list[str]) -> str:
    """`systemd-analyze verify` the staged unit files before they go live.

    Before the first deploy the venv's gunicorn does not exist yet, and verify would reject
    ExecStart: the staged service is then replaced by one rendered with ExecStart=/bin/true,
    so syntax and every other line are still checked.
    """
    gunicorn_bin = gunicorn.unit_argv(s)[0]
    service = templates.render("systemd/app.service.j2", s, gunicorn_exec="/bin/true")
    paths = " ".join(q(p) for p in staged)
    log = scratch("verify.log")
    return (
        f"if [ ! -x {q(gunicorn_bin)} ]; then {write_file(staged[1], service)}; fi; "
        f"systemd-analyze verify {paths} >{log} 2>&1 || {{ cat {log}; "
        + fail("systemd-analyze verify rejected the unit",
               "correct the settings it names (the lines above) and run fab setup again") + "; }"
    )


def probes(s):
    sock, svc = units(s)
    procs = [p for u in layout.process_names(s)
             for p in (facts.enabled(f"{u}.service"), facts.active(f"{u}.service"))]
    return [facts.enabled(sock), facts.enabled(svc), facts.active(sock), facts.active(svc),
            *procs, facts.procunits(s.app_name), facts.exists(f"{s.root}/current/.venv")]


def process_lines(s, f, changed: set[str]) -> list[str]:
    """Processes: units: remove dropped ones, enable new ones, (re)start changed ones once a
    release is deployed (before that they have no code to run)."""
    lines = []
    wanted = [f"{u}.service" for u in layout.process_names(s)]
    for unit in sorted(set(f.get(f"procunits:{s.app_name}", "").split()) - set(wanted)):
        lines += [f"systemctl disable -q --now {q(unit)} 2>/dev/null || true",
                  f"rm -f {q('/etc/systemd/system/' + unit)}", "systemctl daemon-reload"]
    deployed = f.get(f"exists:{s.root}/current/.venv") == "yes"
    off = [u for u in wanted if f.get(f"enabled:{u}") != "enabled"]
    if off:
        lines.append(f"systemctl enable -q {' '.join(off)}")
    if deployed:
        restart = [u for u in wanted if layout.process_unit(s, u[len(s.app_name) + 1:-8]) in changed]
        start = [u for u in wanted if f.get(f"active:{u}") != "active" and u not in restart]
        if restart:
            lines.append(f"systemctl restart {' '.join(restart)}")
        if start:
            lines.append(f"systemctl start {' '.join(start)}")
    return lines


def activate(s, f, changed: set[str]) -> list[str]:
    """Enable and start what is not; apply changed unit files (paths in `changed`)."""
    sock, svc = units(s)
    running = f.get(f"active:{svc}") == "active"
    lines = ["systemctl daemon-reload"] if changed else []
    if f.get(f"enabled:{sock}") != "enabled" or f.get(f"enabled:{svc}") != "enabled":
        lines.append(f"systemctl enable -q {sock} {svc}")
    if layout.unit_path(s, "socket") in changed and f.get(f"active:{sock}") == "active":
        # A new listening socket cannot be handed to a running master: restart both.
        lines.append(f"systemctl stop {svc} {sock}")
        lines.append(f"systemctl start {sock}" + (f" {svc}" if running else ""))
    else:
        if f.get(f"active:{sock}") != "active":
            lines.append(f"systemctl start {sock}")
        if running and layout.unit_path(s, "service") in changed:
            lines.append(f"systemctl restart {svc}")
    return lines + process_lines(s, f, changed)


def program_values(s, release_dir: str) -> dict:
    """The preflight: the kit's preflight.py in a transient unit with the service's own
    sandbox, user and env (it ends when it has its answer; RuntimeMaxSec stops a hang)."""
    from deploy import health  # deploy only (setup plans without it)
    name = layout.preflight_dir(s).rsplit("/", 1)[1]  # the unit and its RuntimeDirectory
    props = [("User", s.app_user), ("Group", s.app_user), ("RuntimeDirectory", name),
             ("EnvironmentFile", f"-{layout.env_file(s)}"), ("WorkingDirectory", release_dir),
             ("RuntimeMaxSec", s.health_timeout + 2)]
    # the service's own sandbox (systemd/sandbox.conf.j2), as release_command gets it
    run = ["--service-type=exec"] + [f"--property={k}={v}" for k, v in props]
    run += [f"--property={p}" for p in appcmd.sandbox_properties(s)]
    argv = health.preflight_argv(s, release_dir, gunicorn.argv(s, release_dir, workers=1))
    return {"PREFLIGHT_UNIT": f"{name}.service", "PREFLIGHT_RUN": run + ["--", *argv],
            **health.zygote_values(s, argv)}


def remove(s) -> list[str]:
    """Stop and remove this manager's units for the app (used when switching managers)."""
    sock, svc = units(s)
    return [
        f"systemctl disable -q --now {svc} {sock} 2>/dev/null || true",
        f"rm -f {q(layout.unit_path(s, 'service'))} {q(layout.unit_path(s, 'socket'))}",
        "systemctl daemon-reload",
    ]


def installed_probe(s):
    return facts.exists(layout.unit_path(s, "service"))
