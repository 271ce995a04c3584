# shellcheck shell=bash
# The process manager's side of the remote programs, for systemd (supervisor.sh offers the
# same functions). gunicorn runs as $APP.service, fed by $APP.socket, which keeps the
# listening socket (and queues connections) while the master restarts.
# Values: APP, HEALTH_TIMEOUT, PROCESSES, PREFLIGHT_UNIT, PREFLIGHT_RUN (systemd-run's arguments: the unit's own
# sandbox properties, user and environment, then the preflight's command line).

mgr_is_active() { systemctl is-active -q "$APP.service"; }
mgr_start() { systemctl start "$APP.service"; }
# reload: HUP, new workers import the release `current` points to; the master stays. Sent
# here, as the unit's ExecReload would: `systemctl reload` has systemd start /bin/kill inside
# the unit's sandbox first (~50 ms CPU a reload). No main process known: systemctl's way.
mgr_reload() {
  local pid
  pid=$(mgr_main_pid 2> /dev/null || true)
  if [ "${pid:-0}" -gt 1 ] 2> /dev/null; then kill -HUP "$pid"; else systemctl reload "$APP.service"; fi
}
# restart: a new master; the socket unit queues connections meanwhile (they stall while it boots)
mgr_restart() { systemctl restart "$APP.service"; }
mgr_main_pid() { systemctl show -p MainPID --value "$APP.service"; }

# handover: a new master (a new venv or environment) beside the old one, without a stall
# (lib.sh `handover`); systemd's MainPID names the master, the old one is stopped here.
mgr_handover() { handover mgr_main_pid mgr_restart 1; }
# what `fab restart` does: a new master and workers, handed over without a stall
mgr_graceful_restart() { mgr_handover; }

# The app's processes: (PROCESSES: unit names without .service, e.g. shop-worker).
mgr_restart_processes() { systemctl restart "${PROCESSES[@]/%/.service}"; }
mgr_processes_running() { systemctl is-active -q "${PROCESSES[@]/%/.service}"; }
mgr_process_logs() { # NAME LINES [SINCE] [follow]
  local args=(-u "$1.service" --no-pager -o short-iso -n "$2")
  if [ -n "${3:-}" ]; then args+=(--since "$3"); fi
  if [ "${4:-}" = follow ]; then args+=(-f); fi
  journalctl "${args[@]}"
}
mgr_process_state() { systemctl is-active "$1.service" || true; }

# mgr_logs LINES [SINCE] [follow]
mgr_logs() { mgr_process_logs "$APP" "$@"; }

# The preflight: the kit's preflight.py loads the new release and answers its health path
# in-process, in a transient unit with the very sandbox properties of $APP.service (rendered
# from the same list); --wait: its exit code is the verdict. Its output: $KIT_TMP/preflight.log.
preflight_run() {
  systemctl stop "$PREFLIGHT_UNIT" 2>/dev/null || true # one left by a deploy whose lock was broken
  systemd-run --quiet --collect --wait --pipe --unit="$PREFLIGHT_UNIT" "${PREFLIGHT_RUN[@]}" \
    < /dev/null > "$KIT_TMP/preflight.log" 2>&1
}
preflight_stop() { systemctl stop "$PREFLIGHT_UNIT" 2>/dev/null || true; }
