"""The kit's hand-over to a new gunicorn master, as a bash function both managers share.

`function(...)` defines `kit_handover`: USR2 to the current master (gunicorn forks and execs a
new one on the same socket: deploy/kit/handover.py), then wait until the manager names a new
master — systemd's MainPID, or the pid file supervisor's keeper writes (deploy/kit/keeper.py);
both change only once every new worker has imported the app. USR2 is repeated every 0.5 s: a
master that was itself handed over ignores it until it notices (within 1 s) that its parent is
gone. Not ready in time: the new master (if one started) is stopped and the old one serves on.
"""
from __future__ import annotations


def function(master: str, fallback: str, retire_old: bool, timeout: int) -> str:
    """master: a command printing the current master's pid; fallback: what to run when no
    master runs; retire_old: TERM the old master here (systemd) or leave it to the keeper."""
    retire = 'kill -TERM "$old" 2>/dev/null || true; ' if retire_old else ""
    return f"""kit_handover() {{
  local old new i=0 c deadline
  old=$({master} 2>/dev/null || true)
  if [ -z "$old" ] || [ "$old" = 0 ]; then {fallback}; return; fi
  deadline=$(( $(date +%s%N) / 1000000 + {int(timeout)} * 1000 ))
  while [ $(( $(date +%s%N) / 1000000 )) -lt "$deadline" ]; do
    if [ $((i % 25)) -eq 0 ]; then kill -USR2 "$old" 2>/dev/null || break; fi
    i=$((i + 1))
    sleep 0.02
    new=$({master} 2>/dev/null || true)
    if [ -n "$new" ] && [ "$new" != "$old" ] && [ "$new" != 0 ]; then {retire}return 0; fi
  done
  for c in $(pgrep -P "$old" || true); do
    if tr '\\0' '\\n' < "/proc/$c/environ" 2>/dev/null | grep -qx "GUNICORN_PID=$old"; then kill -TERM "$c" || true; fi
  done
  echo "the new gunicorn master was not ready within {int(timeout)} s; the old one still serves"
  return 1
}}"""
