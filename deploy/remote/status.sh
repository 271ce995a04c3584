# shellcheck shell=bash
# status: the current release, the service's state, uptime and workers, the health answer
# through nginx, and the deploy lock. Values: the common ones.
set +e
echo "release:  $(current_release | grep . || echo none)"
echo "manager:  $MANAGER"
pid=$(mgr_main_pid 2>/dev/null)
if mgr_is_active; then state=running; else state=stopped; fi
echo "service:  $state (master pid ${pid:-none})"
if [ -n "$pid" ] && [ "$pid" != 0 ]; then
  echo "uptime:   $(ps -o etime= -p "$pid" | tr -d ' ')"
  echo "workers:  $(pgrep -c -P "$pid")"
fi
echo "health:   ${HEALTH_PATH} $(probe_nginx 2>&1 | tr -d '\r' |
  sed -n 's/^[Xx]-[Ff]lasksample-[Rr]elease: */release /p; s/^kit-status \(.*\)/(HTTP \1)/p' | tr '\n' ' ')"
if [ ${#PROCESSES[@]} -gt 0 ]; then
  states=()
  for p in "${PROCESSES[@]}"; do states+=("${p#"$APP"-}=$(mgr_process_state "$p")"); done
  echo "processes: ${states[*]}"
fi
if declare -F tls_status > /dev/null; then tls_status; fi
echo "lock:     $(lock_status)"
