"""Remote release scripts: unpack + venv + preflight, switch `current`, roll back, clean up.

Each function returns a bash script (or lines of one); `deploy.tasks.deploy` runs them. The
order of a deploy on each host:

  prepare  lock, unpack into releases/<id>, reuse or build the venv for its requirements,
           boot it on a private socket and check its health (it takes no traffic yet)
  switch   point `current` at it (rename of a symlink: atomic), reload gunicorn (restart when
           the venv changed), wait until nginx answers with the new release id; on failure
           point `current` back, reload, and report the app's last log lines
  finish   record the deploy, keep the newest N releases, unlock
"""
from __future__ import annotations

from deploy import appcmd, audit, health, layout, lock
from deploy.managers import manager_for
from deploy.shell import q, scratch, script, step

PREFLIGHT_EXIT = 3
UNHEALTHY_EXIT = 4


def venv_lines(s, req_hash: str, release_path: str) -> list[str]:
    """Reuse the venv for these requirements, or build it (marked complete only at the end)."""
    venv = q(layout.venv_dir(s, req_hash))
    reqs = q(layout.kit_file(release_path, "requirements.txt"))
    log = scratch("pip.log")
    return [
        f"if [ ! -e {venv}/.complete ]; then",
        f"  echo 'building venv {req_hash} (requirements changed)'",
        f"  rm -rf {venv} && {q(s.python)} -m venv {venv}",
        f"  {venv}/bin/pip install -q --disable-pip-version-check --no-input -r {reqs} "
        f">{log} 2>&1 || {{ tail -n 5 {log}; rm -rf {venv}; "
        "echo '::error pip install of the pinned requirements failed (its log is above)'; exit 1; }",
        f"  touch {venv}/.complete",
        "fi",
        f"ln -sfn ../../venvs/{req_hash} {q(release_path)}/.venv",
    ]


def shared_lines(s, release_path: str) -> list[str]:
    """Link each shared_dirs entry of the release to shared/<entry>, created app-writable."""
    lines = []
    for path in s.shared_dirs:
        shared = q(f"{layout.shared_dir(s)}/{path}")
        inside = q(f"{release_path}/{path}")
        lines += [
            f"install -d -o {s.app_user} -g {s.app_user} -m 750 {shared}",
            f"rm -rf {inside} && mkdir -p \"$(dirname {inside})\" && ln -s {shared} {inside}",
        ]
    return lines


def preflight_lines(s, release_path: str) -> list[str]:
    """Boot the new release alone on a private socket as the app user and check its health."""
    pf = f"/run/{s.app_name}-preflight"
    sock, log = f"{pf}/gunicorn.sock", f"{pf}/log"
    env = layout.env_file(s)
    boot = (f"set -a; [ -r {env} ] && . {env}; set +a; exec {release_path}/.venv/bin/gunicorn "
            f"--chdir {release_path} --config {layout.kit_file(release_path, 'gunicorn.conf.py')} --bind unix:{sock} "
            f"--workers 1 --no-control-socket {q(s.wsgi)}")
    return [
        f"rm -rf {pf} && install -d -o {s.app_user} -g {s.app_user} -m 700 {pf}",
        f"(cd / && exec setsid runuser -u {s.app_user} -- sh -c {q(boot)}) >{log} 2>&1 < /dev/null &",
        "pf_pid=$!",
        f"if ! KIT_WATCH_PID=$pf_pid kit_healthy '' {s.health_timeout} {health.on_socket(s, sock)}; then",
        "  kill -TERM -- -$pf_pid 2>/dev/null || true; sleep 0.2; kill -KILL -- -$pf_pid 2>/dev/null || true",
        "  echo '--- the new release failed its health check before taking traffic; its log:'",
        f"  {{ grep -v '^\\[.*\\] \\[INFO\\]' {log} || true; }} | tail -n 15",
        f"  rm -rf {q(release_path)} {pf}",
        f"  {lock.release_line(s)}",
        f"  echo '::error the new release failed its health check on a private socket; "
        f"nothing was switched, the previous release still serves — correct the app (its log is above) and deploy again'; exit {PREFLIGHT_EXIT}",
        "fi",
        "kill -TERM -- -$pf_pid 2>/dev/null || true",
        f"rm -rf {pf}",
    ]


def set_up_check(s) -> str:
    """Refuse, before touching anything, a host that `fab setup` has not prepared for this
    app and process manager."""
    m = manager_for(s)
    config = m.installed_probe(s).arg
    return (f"[ -d {q(layout.releases_dir(s))} ] && [ -e {q(config)} ] || {{ echo '::error this host is "
            f"not set up for {s.app_name} under {m.NAME} ({config} is missing) — run fab setup first'; "
            "exit 2; }")


def prepare_script(s, release: str, req_hash: str, holder: str, force: bool,
                   release_command: bool = False) -> str:
    """The archive arrives base64-encoded on stdin, in the same round trip as this script."""
    rel = layout.release_dir(s, release)
    # Any failure once the lock is ours undoes this release and frees the lock, so the next
    # deploy just works. A client that vanishes (Ctrl-C, kill, closed connection) makes the
    # script's next line of output fail with SIGPIPE: trapped, that is such a failure too.
    undo = f"rm -rf {q(rel)} {q(rel)}.partial /run/{s.app_name}-preflight; {lock.release_line(s)}"
    return script(
        health.wait_function(s),
        # Read all of stdin first, whatever happens next (a refused lock must not leave the
        # client writing into a closed channel).
        f"kit_archive=$(mktemp {scratch('upload.XXXXXX')})",
        "trap 'rm -f \"$kit_archive\"' EXIT",
        "base64 -d > \"$kit_archive\"",
        set_up_check(s),
        step("lock"),
        lock.acquire(s, holder, release, force),
        f"trap 'rc=$?; rm -f \"$kit_archive\"; [ $rc -eq 0 ] || {{ {undo}; }}' EXIT",
        "trap 'exit 141' PIPE",
        step("unpack"),
        f"rm -rf {q(rel)}.partial && mkdir -p {q(rel)}.partial",
        f"tar -xzf \"$kit_archive\" -C {q(rel)}.partial --no-same-owner && rm -f \"$kit_archive\"",
        f"echo {q(release)} > {q(rel)}.partial/REVISION",
        shared_lines(s, f"{rel}.partial"),
        f"chmod -R u=rwX,go=rX {q(rel)}.partial && mv -T {q(rel)}.partial {q(rel)}",
        step("venv"),
        venv_lines(s, req_hash, rel),
        # once per deploy (the first host), before the preflight: it may create what the app needs
        [step("release_command"), appcmd.release_command_lines(s, rel)] if release_command else [],
        step("preflight"),
        preflight_lines(s, rel),
        "echo ::prepared",  # a vanished client makes this write fail: the release is undone
    )


def activate_lines(s) -> list[str]:
    """Make gunicorn serve what `current` points to: reload, hand over to a new master if the
    venv changed (needs the manager's handover_function in the script)."""
    m = manager_for(s)
    cur = q(layout.current_link(s))
    # A failing start/reload must not end the script before the health gate decides (and
    # rolls back): the gate, not the manager's exit code, is the judge.
    return [
        f"{{ if ! {m.is_active(s)}; then {m.start(s)};",
        f"elif [ \"$(readlink -f {cur}/.venv)\" != \"$old_venv\" ]; then {m.handover(s)};",
        f"else {m.reload(s)}; fi; }} || echo 'warning: {m.NAME} reported an error; the health check decides'",
    ] + ([f"{m.restart_processes(s)} || echo 'warning: a process did not restart; the gate decides'"]
         if s.processes else [])


def processes_gate(s) -> list[str]:
    """`kit_processes_up`: every process of processes: keeps running for 2 s after its restart
    (as supervisor's startsecs); else it names the first one down and shows its log."""
    if not s.processes:
        return ["kit_processes_up() { :; }"]
    m = manager_for(s)
    logs = "; ".join(f"{m.process_logs(s, name, lines=10)} 2>&1 | tail -n 10" for name in s.processes)
    return [
        "kit_processes_up() {",
        "  local i",
        "  for i in $(seq 20); do",
        f"    if ! {m.processes_running(s)}; then",
        f"      echo '--- a process of processes: is not running; its log:'; {logs}; return 1",
        "    fi",
        "    sleep 0.1",
        "  done",
        "}",
    ]


def point_current(s, release_expr: str) -> str:
    """Repoint `current` by renaming a new symlink over it: never a moment without one."""
    root = q(s.root)
    return f"ln -sfn releases/{release_expr} {root}/current.kit-new && mv -T {root}/current.kit-new {root}/current"


def switch_script(s, release: str, holder: str, *, verb: str = "deployed", lock_first: bool = False,
                  force: bool = False, log_lines: int = 20) -> str:
    """Switch to `release` behind the health gate; put the old one back if it fails.

    The body runs detached from the SSH session (HUP/INT/PIPE ignored, output to a file
    printed at the end), so a lost connection cannot stop it between switch and health check.
    """
    m = manager_for(s)
    cur = q(layout.current_link(s))
    rel = q(release)
    # activate_lines compares the venv `current` has now with this one: restart if they differ
    remember_venv = f"old_venv=$(readlink -f {cur}/.venv 2>/dev/null || true)"
    body = [
        health.wait_function(s),
        m.handover_function(s),
        lock.acquire(s, holder, release, force) if lock_first else [],
        f"[ -d {q(layout.release_dir(s, release))} ] || {{ {lock.release_line(s)}; "
        f"echo '::error release {release} does not exist on this host — pick one from fab releases'; exit 2; }}",
        f"prev={current_release(s)}",
        remember_venv,
        step("switch"),
        point_current(s, rel),
        activate_lines(s),
        step("health"),
        processes_gate(s),
        f"if ! kit_healthy {rel} {s.health_timeout} {health.through_nginx(s)} || ! kit_processes_up; then",
        f"  echo '--- release {release} failed its health check through nginx; the app log says:'",
        f"  {m.logs(s, lines=log_lines)} 2>&1 | tail -n {log_lines}",
        "  if [ -n \"$prev\" ] && [ \"$prev\" != " + rel + " ]; then",
        "    " + remember_venv,
        "    " + point_current(s, '"$prev"'),
        *["    " + line for line in activate_lines(s)],
        f"    kit_healthy \"$prev\" {s.health_timeout} {health.through_nginx(s)} "
        "|| echo 'warning: the previous release is not healthy either'",
        "    echo \"rolled back to $prev\"",
        "  fi",
        f"  {lock.release_line(s)}",
        f"  echo \"::error release {release} failed its health check through nginx; "
        f"${{prev:-no previous release}} serves again — correct the app (its log is above) and deploy again\"; "
        f"exit {UNHEALTHY_EXIT}",
        "fi",
        "echo \"::previous $prev\"",
        finish_lines(s, release, holder, verb),
    ]
    return script(
        "trap '' HUP INT PIPE",
        "kit_log=$(mktemp)",
        "set +e",
        "( set -e",
        body,
        ") > \"$kit_log\" 2>&1; rc=$?",
        "cat \"$kit_log\"; rm -f \"$kit_log\"; exit $rc",
    )


def finish_lines(s, release: str, holder: str, verb: str) -> list[str]:
    """Record the deploy, drop releases beyond keep_releases (never current/previous), unlock."""
    entry = q(f"{verb} {release} by {holder}")
    return [
        step("finish"),
        f"echo \"$(date -u +%Y-%m-%dT%H:%M:%SZ) \"{entry} >> {q(layout.deploy_log(s))}",
        audit.append_line(s, holder, f"{verb} {release}"),
        *cleanup_lines(s),
        lock.release_line(s),
    ]


def abort_script(s, release: str, holder: str) -> str:
    """Undo a prepared, never switched release (another host failed, or Ctrl-C): remove it
    and unlock — only if this deploy holds the lock, so another deploy's lock is never taken."""
    rel = q(layout.release_dir(s, release))
    return script(f"if {lock.held_by(s, holder)}; then rm -rf {rel} {rel}.partial; {lock.release_line(s)}; fi")


def current_release(s) -> str:
    """Shell: the name of the release `current` points to ('' when there is none)."""
    return f"$(basename \"$(readlink {q(layout.current_link(s))} 2>/dev/null)\" 2>/dev/null || true)"


def sorted_releases(s) -> str:
    """Shell pipeline: the release names, oldest first, half-unpacked ones left out."""
    return f"ls -1 {q(layout.releases_dir(s))} 2>/dev/null | grep -v '\\.partial$' | sort"


def release_before_current(s) -> str:
    """Shell: the release just before "$cur" (itself when it is the oldest)."""
    return f"$({sorted_releases(s)} | grep -B1 -x \"$cur\" | head -n1)"


def cleanup_lines(s) -> list[str]:
    """Keep the newest keep_releases releases plus current and the one before it."""
    rels = q(layout.releases_dir(s))
    venvs = q(layout.venvs_dir(s))
    return [
        f"cur={current_release(s)}",
        f"prev={release_before_current(s)}",
        f"for r in $(ls -1 {rels} | sort -r | tail -n +{s.keep_releases + 1}); do",
        f"  [ \"$r\" = \"$cur\" ] || [ \"$r\" = \"$prev\" ] || rm -rf {rels}/\"$r\"",
        "done",
        f"used=$(for l in {rels}/*/.venv; do readlink \"$l\" || true; done)",
        f"for v in $(ls -1 {venvs}); do",
        f"  grep -qx \"../../venvs/$v\" <<<\"$used\" || rm -rf {venvs}/\"$v\"",
        "done",
    ]


def rollback_target_lines(s, named: str | None) -> list[str]:
    """Print the release to roll back to: the named one, or the one before current."""
    rels = q(layout.releases_dir(s))
    if named:
        return [f"[ -d {rels}/{q(named)} ] && echo {q(named)} || {{ echo '::error no release {named} on this host — pick one from fab releases'; exit 2; }}"]
    return [
        f"cur={current_release(s)}",
        f"t={release_before_current(s)}",
        "if [ -z \"$t\" ] || [ \"$t\" = \"$cur\" ]; then echo '::error there is no release before the current one to roll back to — deploy one first, or name one with --to'; exit 2; fi",
        "echo \"$t\"",
    ]


def list_script(s) -> str:
    return script(
        f"cur={current_release(s)}",
        f"for r in $({sorted_releases(s)}); do",
        "  if [ \"$r\" = \"$cur\" ]; then echo \"* $r (current)\"; else echo \"  $r\"; fi",
        "done",
        f"echo '-- last deploys:'; tail -n 5 {q(layout.deploy_log(s))} 2>/dev/null || true",
    )
