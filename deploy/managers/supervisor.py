"""gunicorn under supervisord (Debian's package, itself run by systemd).

gunicorn binds the app's unix socket itself; reload is `supervisorctl signal HUP`, which
starts new workers on the current release without closing the socket. supervisord runs the
kit's keeper (deploy/kit/keeper.py), which starts gunicorn and stays, so a new venv or
environment is handed over to a new master (USR2) with no stall, as under systemd.
`supervisorctl restart` stops the program and its socket: requests fail until gunicorn is back
(measured in bench/; supervisord has no socket that outlives a program). No kit task uses it.
"""
from __future__ import annotations

from deploy import facts, layout, templates
from deploy.managers import ManagedFile, handover as handover_loop
from deploy.shell import q, scratch

NAME = "supervisor"


def files(s) -> list[ManagedFile]:
    # The processes: programs share the app's file: supervisorctl update adds and removes them.
    programs = "".join(templates.render("supervisor/process.conf.j2", s, name=name, command=command)
                       for name, command in s.processes.items())
    return [ManagedFile(layout.supervisor_conf(s), templates.render("supervisor/app.conf.j2", s) + programs),
            ManagedFile(layout.tmpfiles_conf(s), templates.render("supervisor/tmpfiles.conf.j2", s))]


def verify(s, staged: list[str]) -> str:
    """Parse the staged program file (the first) with configparser, supervisor's own format."""
    checks = (f"c=configparser.RawConfigParser(); c.read_file(open({staged[0]!r})); "
              f"assert c.has_section('program:{s.app_name}')")
    log = scratch("verify.log")
    return (f"python3 -c {q('import configparser; ' + checks)} 2>{log} || "
            f"{{ tail -n 3 {log}; echo '::error the supervisor program file does not parse'; exit 1; }}")


def probes(s):
    return [facts.enabled("supervisor"), facts.active("supervisor")]


def activate(s, f, changed: set[str]) -> list[str]:
    lines = []
    if f.get("enabled:supervisor") != "enabled":
        lines.append("systemctl enable -q supervisor")
    if f.get("active:supervisor") != "active":
        lines.append("systemctl start supervisor")
        lines.append("for i in $(seq 50); do supervisorctl pid >/dev/null 2>&1 && break; sleep 0.1; done")
    if layout.tmpfiles_conf(s) in changed:
        lines.append(f"systemd-tmpfiles --create {q(layout.tmpfiles_conf(s))}")
    if changed:
        # www-data (nginx) reaches gunicorn's socket through the app's group.
        lines.append(f"usermod -a -G {q(s.app_user)} www-data && systemctl reload-or-restart nginx")
        lines.append("supervisorctl reread >/dev/null && supervisorctl update >/dev/null")
    return lines


def restart_processes(s) -> str:
    names = " ".join(layout.process_names(s))
    return f"supervisorctl restart {names} >/dev/null" if names else ""


def processes_running(s) -> str:
    names = " ".join(layout.process_names(s))
    return f"! supervisorctl status {names} | grep -qv RUNNING" if names else "true"


def process_logs(s, name: str, follow: bool = False, lines: int = 50, since: str | None = None) -> str:
    path = q(f"/var/log/supervisor/{s.app_name}-{name}.log")
    return f"tail -n {int(lines)}{' -F' if follow else ''} {path}"


def process_status(s) -> str:
    """Shell printing `name=STATE` for each of processes: (one word each)."""
    return " ".join(f"{name}=$(supervisorctl status {s.app_name}-{name} | awk '{{print $2}}')"
                    for name in s.processes)


def start(s) -> str:
    return f"supervisorctl start {s.app_name} >/dev/null"


def reload(s) -> str:
    return f"supervisorctl signal HUP {s.app_name} >/dev/null"


def restart(s) -> str:
    return f"supervisorctl restart {s.app_name} >/dev/null"


def graceful_restart(s) -> str:
    """What `fab restart` does: a new master, handed over (`supervisorctl restart` would close
    the socket and nginx would answer 502 until gunicorn is back)."""
    return handover(s)


def handover(s) -> str:
    """A new master (new venv, new environment) beside the old one; see handover_function."""
    return "kit_handover"


def handover_function(s) -> str:
    # The keeper retires the old master itself once the new one is ready. A program started
    # before the keeper existed (no pid file) can only be restarted.
    return handover_loop.function(f"cat {q(layout.master_pidfile(s))}", restart(s),
                                  retire_old=False, timeout=s.health_timeout)


def is_active(s) -> str:
    return f"supervisorctl status {s.app_name} 2>/dev/null | grep -qE 'RUNNING|STARTING'"


def main_pid(s) -> str:
    """gunicorn's master (supervisord's own pid for the program is the keeper's)."""
    return f"cat {q(layout.master_pidfile(s))} 2>/dev/null || supervisorctl pid {s.app_name}"


def status(s) -> str:
    return f"supervisorctl status {s.app_name}"


def logs(s, follow: bool = False, lines: int = 50, since: str | None = None) -> str:
    path = q(f"/var/log/supervisor/{s.app_name}.log")
    return f"tail -n {int(lines)}{' -F' if follow else ''} {path}"


def remove(s) -> list[str]:
    return [
        f"supervisorctl stop {s.app_name} >/dev/null 2>&1 || true",
        f"rm -f {q(layout.supervisor_conf(s))} {q(layout.tmpfiles_conf(s))}",
        "supervisorctl reread >/dev/null 2>&1 && supervisorctl update >/dev/null 2>&1 || true",
    ]


def installed_probe(s):
    return facts.exists(layout.supervisor_conf(s))
