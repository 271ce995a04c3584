"""Scripts for the day-to-day tasks: status, logs, restart, releases."""
from __future__ import annotations

from deploy import health, layout, lock, tlsserver
from deploy.errors import KitError
from deploy.managers import manager_for
from deploy.shell import q, script


def status_script(s) -> str:
    m = manager_for(s)
    cur = q(layout.current_link(s))
    return script(
        "set +e",
        f"echo \"release:  $(basename \"$(readlink {cur} 2>/dev/null)\" 2>/dev/null || echo none)\"",
        f"echo \"manager:  {m.NAME}\"",
        f"pid=$({m.main_pid(s)} 2>/dev/null)",
        f"if {m.is_active(s)}; then state=running; else state=stopped; fi",
        "echo \"service:  $state (master pid ${pid:-none})\"",
        "if [ -n \"$pid\" ] && [ \"$pid\" != 0 ]; then",
        "  echo \"uptime:   $(ps -o etime= -p \"$pid\" | tr -d ' ')\"",
        "  echo \"workers:  $(pgrep -c -P \"$pid\")\"",
        "fi",
        f"echo \"health:   {s.gate_path} $(curl -s -m 3 -o /dev/null -D - -w '(HTTP %{{http_code}})\\n' "
        f"{health.through_nginx(s)} 2>&1 | tr -d '\\r' "
        "| sed -n 's/^[Xx]-[Ff]lasksample-[Rr]elease: */release /p; /^(HTTP [0-9]*)$/p' | tr '\\n' ' ')\"",
        f"echo \"processes: {m.process_status(s)}\"" if s.processes else "",
        tlsserver.status_lines(s),
        f"echo \"lock:     $({lock.status_line(s)})\"",
    )


def logs_script(s, follow: bool, lines: int, since: str | None, nginx: bool,
                process: str | None = None) -> str:
    if process:
        if process not in s.processes:
            raise KitError(f"there is no process {process!r} in processes:",
                           f"pick one of: {', '.join(s.processes) or '(none configured)'}")
        return script(manager_for(s).process_logs(s, process, follow=follow, lines=lines, since=since))
    if nginx:
        files = f"/var/log/nginx/{s.app_name}.access.log /var/log/nginx/{s.app_name}.error.log"
        return script(f"tail -n {int(lines)}{' -F' if follow else ''} {files}")
    return script(manager_for(s).logs(s, follow=follow, lines=lines, since=since))


def restart_script(s) -> str:
    m = manager_for(s)
    return script(
        health.wait_function(s),
        m.handover_function(s),
        m.graceful_restart(s),
        f"kit_healthy '' {s.health_timeout} {health.through_nginx(s)} "
        "|| { echo '::error the app did not answer its health check after the restart'; exit 4; }",
        "echo restarted and healthy",
    )


def show_setting_lines(rows) -> list[str]:
    return [f"{name:<22} {default!r:<24} {doc}" for name, default, doc in rows]

