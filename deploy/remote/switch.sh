# shellcheck shell=bash
# switch: point `current` at RELEASE behind the health gate; put the one before back if it
# fails. Used by deploy (after prepare), rollback, and the fleet's undo of a failed deploy.
# Values: RELEASE VERB ("deployed" / "rolled back to") LOCK_FIRST (take the lock here; a deploy
# holds it since prepare) NEW (1: a just-prepared release, removed when it fails its gate)
# LOG_LINES KEEP_RELEASES and the common ones.
#
# Detached from the SSH session (HUP/INT/PIPE ignored, output to a file shown at the end), so
# a lost connection cannot stop it between the switch and the health check. Whatever happens,
# the exit hook leaves `current` on a release that passed its gate (or the one before) and
# frees this run's lock; a failure after the gate (the deploy log, cleanup) is only a warning.
trap '' HUP INT PIPE
exec 3>&1 > "$KIT_TMP/switch.out" 2>&1
show_output() { cat "$KIT_TMP/switch.out" >&3 || true; }
at_exit show_output

if ! is_release "$RELEASE"; then
  fail "$EXIT_USAGE" "$RELEASE is not a release name" "pick one from fab releases"
fi
if [ "$LOCK_FIRST" = 1 ]; then
  lock_take "release $RELEASE"
elif ! lock_ours; then
  fail "$EXIT_LOCKED" "this deploy no longer holds the deploy lock (broken with --force?); nothing was switched" \
    "check fab status, then deploy again"
fi
lock_worker # the switch goes on when the connection drops: the lock is not stale meanwhile
at_exit lock_free
if [ ! -d "$RELEASES/$RELEASE" ]; then
  fail "$EXIT_USAGE" "release $RELEASE does not exist on this host" "pick one from fab releases"
fi
prev=$(current_release)
old_venv=$(readlink -f "$CURRENT/.venv" 2>/dev/null || true)
state=before

# Make gunicorn serve what `current` points to: reload, or hand over to a new master when the
# venv changed; the processes: restart on the release too.
activate() {
  if ! mgr_is_active; then
    mgr_start
  elif [ "$(readlink -f "$CURRENT/.venv")" != "$old_venv" ]; then
    mgr_handover
  else
    reload_retiring_old_workers
  fi
  if [ ${#PROCESSES[@]} -gt 0 ]; then
    mgr_restart_processes || echo 'warning: a process did not restart; the gate decides'
  fi
}
switch_to_new() {
  point "$CURRENT" "$RELEASE"
  state=switched
  activate
  step health
}
switch_back() {
  echo "--- release $RELEASE failed its health check through nginx; the app log says:"
  mgr_logs "$LOG_LINES" 2>&1 | tail -n "$LOG_LINES" | app_output
  if [ -n "$prev" ] && [ "$prev" != "$RELEASE" ]; then
    old_venv=$(readlink -f "$CURRENT/.venv" 2>/dev/null || true)
    point "$CURRENT" "$prev"
    state=back
    activate || echo "warning: $MANAGER reported an error"
    healthy "$prev" || echo 'warning: the previous release is not healthy either'
    echo "rolled back to $prev"
  fi
}
# Stopped between the switch and the gate's verdict (an unexpected error): back to $prev.
unfinished_switch() {
  if [ "$state" = switched ] && [ -n "$prev" ] && [ "$prev" != "$RELEASE" ]; then
    point "$CURRENT" "$prev"
    activate || true
    echo "stopped before the health check ended: $prev serves again"
  fi
}
at_exit unfinished_switch

step switch
if ! gated switch_to_new switch_back "$RELEASE"; then
  # A just-prepared release that failed its gate goes (never the one `current` points to).
  if [ "$NEW" = 1 ] && [ "$(current_release)" != "$RELEASE" ]; then rm -rf "${RELEASES:?}/$RELEASE"; fi
  fail "$EXIT_UNHEALTHY" "release $RELEASE failed its health check through nginx; ${prev:-no previous release} serves again" \
    "correct the app (its log is above) and deploy again"
fi
state=live
# The release that was live before is recorded: rollback goes to it and cleanup keeps it.
if [ -n "$prev" ] && [ "$prev" != "$RELEASE" ]; then point "$PREVIOUS" "$prev"; fi
mark previous "$prev"

step finish
now=''
utc_now now
echo "$now $VERB $RELEASE by $HOLDER" >> "$DEPLOY_LOG" || echo "warning: could not write $DEPLOY_LOG"
audit "$VERB $RELEASE" || echo "warning: could not write $AUDIT_LOG"
# Keep the newest KEEP_RELEASES releases, the live one and the one before it, and the venvs
# they use (bash's own tests: no program per release).
cleanup() {
  local all=() d i v used keep=$prev
  if [ -z "$keep" ] || [ "$keep" = "$RELEASE" ]; then keep=$(previous_release); fi
  for d in "$RELEASES"/*; do
    d=${d##*/}
    if is_release "$d"; then all+=("$d"); fi # oldest first (the names sort by time)
  done
  for ((i = 0; i < ${#all[@]} - KEEP_RELEASES; i++)); do
    if [ "${all[i]}" != "$RELEASE" ] && [ "${all[i]}" != "$keep" ]; then rm -rf "${RELEASES:?}/${all[i]}"; fi
  done
  for v in "$VENVS"/*; do
    used=0
    for d in "$RELEASES"/*/.venv; do
      if [ "$d" -ef "$v" ]; then used=1 && break; fi
    done
    if [ "$used" = 0 ] && [ -e "$v" ]; then rm -rf "${v:?}"; fi
  done
}
cleanup || echo "warning: cleaning up old releases failed; the deploy itself is done"
