"""gunicorn under supervisord (Debian's package, itself run by systemd).

gunicorn binds the app's unix socket itself; reload is `supervisorctl signal HUP`, which
starts new workers on the current release without closing the socket. supervisord runs the
kit's keeper (deploy/kit/keeper.py), which starts gunicorn and stays, so a new venv or
environment is handed over to a new master (USR2) with no stall, as under systemd.
`supervisorctl restart` stops the program and its socket: requests fail until gunicorn is back
(measured in bench/; supervisord has no socket that outlives a program). No kit task uses it.
The shell side (reload, hand-over, logs, processes, the preflight boot) is
deploy/remote/supervisor.sh.
"""
from __future__ import annotations

from deploy import facts, gunicorn, layout, templates
from deploy.managers.base import ManagedFile
from deploy.shell import fail, q, scratch

NAME = "supervisor"


def paths(s) -> list[str]:
    return [layout.supervisor_conf(s), layout.tmpfiles_conf(s)]


def files(s) -> list[ManagedFile]:
    # The processes: programs share the app's file: supervisorctl update adds and removes them.
    programs = "".join(templates.render("supervisor/process.conf.j2", s, name=name, command=command,
                                        supervisor_log=layout.supervisor_log(s, program))
                       for (name, command), program in zip(s.processes.items(), layout.process_names(s)))
    return [ManagedFile(layout.supervisor_conf(s), templates.render("supervisor/app.conf.j2", s) + programs),
            ManagedFile(layout.tmpfiles_conf(s), templates.render("supervisor/tmpfiles.conf.j2", s))]


def verify(s, staged: list[str]) -> str:
    """Parse the staged program file (the first) with configparser, supervisor's own format."""
    checks = (f"c=configparser.RawConfigParser(); c.read_file(open({staged[0]!r})); "
              f"assert c.has_section('program:{s.app_name}')")
    log = scratch("verify.log")
    return (f"python3 -c {q('import configparser; ' + checks)} 2>{log} || "
            f"{{ tail -n 3 {log}; " + fail("the supervisor program file does not parse",
                                          "correct the settings its error names (above) and run fab setup again")
            + "; }")


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


def program_values(s, release_dir: str) -> dict:
    """The preflight: the kit's preflight.py with the program's own options and env file,
    run the way supervisord runs the program (user, umask, directory: supervisor.sh)."""
    from deploy import health  # deploy only (setup plans without it)
    args = gunicorn.supervisor_argv(s, release_dir, bind=f"{layout.preflight_dir(s)}/gunicorn.sock", workers=1)
    argv = health.preflight_argv(s, release_dir, args)
    return {"PREFLIGHT_RUN": ["/bin/sh", "-c", gunicorn.with_env(s, argv)], **health.zygote_values(s, argv)}


def remove(s) -> list[str]:
    return [
        f"supervisorctl stop {s.app_name} >/dev/null 2>&1 || true",
        f"rm -f {q(layout.supervisor_conf(s))} {q(layout.tmpfiles_conf(s))}",
        "supervisorctl reread >/dev/null 2>&1 && supervisorctl update >/dev/null 2>&1 || true",
    ]


def installed_probe(s):
    return facts.exists(layout.supervisor_conf(s))
