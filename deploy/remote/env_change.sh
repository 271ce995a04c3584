# shellcheck shell=bash
# env_change: edit the app's env file (the changes arrive as JSON on stdin, read by the
# editing program ENV_PROGRAM, deploy/envfile.py) under the deploy lock; if it changed and the
# app runs, restart it behind the health gate, putting the previous file back if unhealthy.
# Values: ENV_PROGRAM ENV_PREV (the backup, in root's .kit) AUDIT_WHAT and the common ones.
umask 077
lock_take "(env change)"
drop_backup() { rm -f "$ENV_PREV"; }
at_exit lock_free
at_exit drop_backup
if [ -e "$ENV_FILE" ]; then cp -p "$ENV_FILE" "$ENV_PREV"; else rm -f "$ENV_PREV"; fi
out=$(python3 -c "$ENV_PROGRAM" edit "$ENV_FILE" "$APP_USER")
printf '%s\n' "$out"
case "$out" in
  *"::env changed"*) ;;
  *) exit 0 ;;
esac
audit "$AUDIT_WHAT"
if ! mgr_is_active; then
  echo 'the app is not running: the new environment applies when it starts'
  exit 0
fi
put_back() {
  if [ -e "$ENV_PREV" ]; then mv -f "$ENV_PREV" "$ENV_FILE"; else rm -f "$ENV_FILE"; fi
  mgr_handover || true
  healthy '' > /dev/null || echo 'warning: the app is not healthy with the previous environment either'
}
if ! gated mgr_handover put_back ''; then
  fail "$EXIT_UNHEALTHY" "the app failed its health check with the new environment; the previous one is back" "see fab logs"
fi
# the app's processes: read the environment when they start too
if [ ${#PROCESSES[@]} -gt 0 ]; then mgr_restart_processes || echo 'warning: a process did not restart'; fi
echo "applied: $APP restarted ($MANAGER) with the new environment and is healthy"
