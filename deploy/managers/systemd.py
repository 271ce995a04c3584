"""gunicorn under systemd: `<app>.socket` (socket activation) + a Type=notify `<app>.service`.

Reload is HUP (new workers import the release `current` points to); restart is a new
master while the socket keeps queueing connections, so neither drops a request.
"""
from __future__ import annotations

from deploy import facts, layout, templates
from deploy.managers import ManagedFile
from deploy.shell import q, scratch

NAME = "systemd"


def units(s) -> tuple[str, str]:
    return f"{s.app_name}.socket", f"{s.app_name}.service"


def files(s) -> list[ManagedFile]:
    return [
        ManagedFile(layout.unit_path(s, "socket"), templates.render("systemd/app.socket.j2", s)),
        ManagedFile(layout.unit_path(s, "service"), templates.render("systemd/app.service.j2", s)),
    ]


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
    return [facts.enabled(sock), facts.enabled(svc), facts.active(sock), facts.active(svc)]


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
    return lines


def start(s) -> str:
    return f"systemctl start {s.app_name}.service"


def reload(s) -> str:
    return f"systemctl reload {s.app_name}.service"


def restart(s) -> str:
    return f"systemctl restart {s.app_name}.service"


def graceful_restart(s) -> str:
    """A new master and workers; the socket unit queues connections meanwhile."""
    return restart(s)


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
