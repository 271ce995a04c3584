"""gunicorn under systemd: `<app>.socket` (socket activation) + a Type=notify `<app>.service`.

Reload is HUP (new workers import the release `current` points to). A new venv or a new
environment needs a new master: the kit hands over (gunicorn's USR2, deploy/kit/handover.py)
so the old master serves until the new one's workers are ready — no stall; `systemctl
restart` also drops nothing (the socket queues connections) but stalls them while it boots.
"""
from __future__ import annotations

from deploy import facts, layout, templates
from deploy.managers import ManagedFile, handover as handover_loop
from deploy.shell import q, scratch

NAME = "systemd"


def units(s) -> tuple[str, str]:
    return f"{s.app_name}.socket", f"{s.app_name}.service"


def files(s) -> list[ManagedFile]:
    return [
        ManagedFile(layout.unit_path(s, "socket"), templates.render("systemd/app.socket.j2", s)),
        ManagedFile(layout.unit_path(s, "service"), templates.render("systemd/app.service.j2", s)),
    ] + [ManagedFile(layout.process_unit(s, name), templates.render(
        "systemd/process.service.j2", s, name=name, command=command))
        for name, command in s.processes.items()]


def verify(s, staged: list[str]) -> str:
    """`systemd-analyze verify` the staged unit files before they go live.

    Before the first deploy the venv's gunicorn does not exist yet; verify then checks a
    copy whose ExecStart points at /bin/true, so syntax and every other line are still checked.
    """
    gunicorn = f"{s.root}/current/.venv/bin/gunicorn"
    paths = " ".join(q(p) for p in staged)
    log = scratch("verify.log")
    return (
        f"if [ ! -x {q(gunicorn)} ]; then sed -i 's#^ExecStart={gunicorn} #ExecStart=/bin/true #' "
        f"{paths}; fi; systemd-analyze verify {paths} >{log} 2>&1 || "
        f"{{ cat {log}; echo '::error systemd-analyze verify rejected the unit'; exit 1; }}"
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


def restart_processes(s) -> str:
    """After a switch or rollback: each process stops (TERM, its job finished) and starts
    on the release `current` points to now."""
    names = " ".join(f"{u}.service" for u in layout.process_names(s))
    return f"systemctl restart {names}" if names else ""


def processes_running(s) -> str:
    names = " ".join(f"{u}.service" for u in layout.process_names(s))
    return f"systemctl is-active -q {names}" if names else "true"


def process_logs(s, name: str, follow: bool = False, lines: int = 50, since: str | None = None) -> str:
    return logs(s, follow, lines, since).replace(f"-u {s.app_name}.service", f"-u {s.app_name}-{name}.service", 1)


def process_status(s) -> str:
    """Shell printing `name=state` for each of processes: (one word each)."""
    return " ".join(f"{name}=$(systemctl is-active {s.app_name}-{name}.service)" for name in s.processes)


def start(s) -> str:
    return f"systemctl start {s.app_name}.service"


def reload(s) -> str:
    return f"systemctl reload {s.app_name}.service"


def restart(s) -> str:
    return f"systemctl restart {s.app_name}.service"


def graceful_restart(s) -> str:
    """What `fab restart` does: a new master and workers, handed over without a stall."""
    return handover(s)


def handover(s) -> str:
    """A new master (new venv, new environment) beside the old one; see handover_function."""
    return "kit_handover"


def handover_function(s) -> str:
    svc = f"{s.app_name}.service"
    return handover_loop.function(f"systemctl show -p MainPID --value {svc}", f"systemctl restart {svc}",
                             retire_old=True, timeout=s.health_timeout)


def is_active(s) -> str:
    return f"systemctl is-active -q {s.app_name}.service"


def main_pid(s) -> str:
    return f"systemctl show -p MainPID --value {s.app_name}.service"


def status(s) -> str:
    return f"systemctl status --no-pager --lines=0 {s.app_name}.service {s.app_name}.socket"


def logs(s, follow: bool = False, lines: int = 50, since: str | None = None) -> str:
    cmd = f"journalctl -u {s.app_name}.service --no-pager -o short-iso -n {int(lines)}"
    if since:
        cmd += f" --since {q(since)}"
    return cmd + (" -f" if follow else "")


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
