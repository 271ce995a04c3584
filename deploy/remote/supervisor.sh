# shellcheck shell=bash
# The process manager's side of the remote programs, for supervisord (systemd.sh offers the
# same functions). gunicorn binds the app's socket itself (a restart closes it for a moment);
# supervisord runs the kit's keeper (deploy/kit/keeper.py), which keeps the current master's
# pid in MASTER_PIDFILE, so a new master is handed over (USR2) as under systemd.
# Values: APP, APP_USER, PROCESSES, MASTER_PIDFILE, SUPERVISOR_LOGS, PREFLIGHT_RUN (the preflight's
# command, as supervisord runs the program's: sh sourcing the env file, then the kit's preflight.py).

# Running: the master the keeper names runs under it (read from /proc, no supervisorctl: its
# start costs ~0.15 s, several times that on a busy host), else supervisord's word.
mgr_is_active() {
  keeper_master "$(mgr_master_pid 2> /dev/null || true)" ||
    supervisorctl status "$APP" 2>/dev/null | grep -qE 'RUNNING|STARTING'
}
mgr_start() { supervisorctl start "$APP" >/dev/null; }
# reload: HUP, new workers on the current release; the master and its socket stay. Straight to
# the master the keeper names (what `supervisorctl signal HUP` makes the keeper do).
mgr_reload() {
  local pid
  pid=$(mgr_master_pid 2> /dev/null || true)
  if keeper_master "$pid"; then kill -HUP "$pid"; else supervisorctl signal HUP "$APP" >/dev/null; fi
}
# keeper_master PID: PID is a process of the app's user (MASTER_PIDFILE is that user's file:
# root signals nothing else on its word) whose parent is the kit's keeper.
keeper_master() {
  local args=()
  app_process "$1" && proc_stat "$1" || return 1
  # shellcheck disable=SC2154  # proc_fields: set by lib.sh's proc_stat
  mapfile -d '' -t args 2> /dev/null < "/proc/${proc_fields[1]}/cmdline" || return 1
  [[ ${args[1]:-} == */keeper.py ]]
}
mgr_restart() { supervisorctl restart "$APP" >/dev/null; }
# gunicorn's master (supervisord's own pid for the program is the keeper's)
mgr_main_pid() { cat "$MASTER_PIDFILE" 2> /dev/null || supervisorctl pid "$APP"; }
mgr_master_pid() { cat "$MASTER_PIDFILE"; }
# handover: a new master beside the old one (lib.sh `handover`); the keeper retires the old one
# once the new one is ready. A program started before the keeper existed can only restart.
mgr_handover() { handover mgr_master_pid mgr_restart 0; }
# what `fab restart` does: a new master, handed over (`supervisorctl restart` would close the
# socket and nginx would answer 502 until gunicorn is back)
mgr_graceful_restart() { mgr_handover; }

# The app's processes: (PROCESSES: program names, e.g. shop-worker).
mgr_restart_processes() { supervisorctl restart "${PROCESSES[@]}" >/dev/null; }
mgr_processes_running() { ! supervisorctl status "${PROCESSES[@]}" | grep -qv RUNNING; }
# mgr_process_logs NAME LINES [SINCE] [follow]: the program's log file (SUPERVISOR_LOGS: its
# directory, deploy/layout.py), filtered by its time stamps (lib.sh `log_files`)
mgr_process_logs() { log_files "$2" "${3:-}" "${4:-}" "$SUPERVISOR_LOGS/$1.log"; }
mgr_process_state() { supervisorctl status "$1" | awk '{print $2}'; }

# mgr_logs LINES [SINCE] [follow]
mgr_logs() { mgr_process_logs "$APP" "$@"; }

# The preflight: the kit's preflight.py loads the new release and answers its health path
# in-process, as supervisord would run the program (same user, umask, directory, env file);
# its exit code is the verdict. Its output goes to a file root opened in the root-only scratch
# dir, so the app cannot point it elsewhere.
preflight_run() {
  (cd "$ROOT" && umask 027 && exec timeout -k 1 $((HEALTH_TIMEOUT + 2)) runuser -u "$APP_USER" -- "${PREFLIGHT_RUN[@]}") \
    < /dev/null > "$KIT_TMP/preflight.log" 2>&1
}
preflight_stop() { true; } # it ended with preflight_run
