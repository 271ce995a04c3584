"""The health gate: a bash function that waits until the app answers its health check.

`wait_function(s)` defines `kit_healthy RELEASE TIMEOUT CURL_ARGS…`: it polls with curl until
the answer is 200 and (when RELEASE is given) names that release three times in a row,
or fails after TIMEOUT seconds — at once if KIT_WATCH_PID is set and that process has died.
Used through nginx after a switch, and on a private socket before a new release takes any
traffic.
"""
from __future__ import annotations

from deploy.shell import q


def wait_function(s) -> str:
    return r"""kit_healthy() {
  local want="$1" timeout="$2" good=0 body deadline
  shift 2
  deadline=$(( $(date +%s%N) / 1000000 + timeout * 1000 ))
  while [ $(( $(date +%s%N) / 1000000 )) -lt "$deadline" ]; do
    if [ -n "${KIT_WATCH_PID:-}" ] && ! kill -0 "$KIT_WATCH_PID" 2>/dev/null; then
      echo "the new release's gunicorn exited before answering"; return 1
    fi
    body=$(curl -sf -m 2 "$@" 2>/dev/null) || body=""
    if [ -n "$body" ] && { [ -z "$want" ] || [[ "$body" == *"\"release\":\"$want\""* ]]; }; then
      good=$((good + 1)); [ "$good" -ge 3 ] && return 0
    else
      good=0
    fi
    sleep 0.02
  done
  echo "last health answer: ${body:-none}"
  return 1
}"""


def host_header(s) -> str:
    name = next((d for d in s.domains if d != "_" and not d.startswith("*")), "localhost")
    return name


def through_nginx(s) -> str:
    """curl arguments reaching the health path through the host's own nginx."""
    return f"-H {q('Host: ' + host_header(s))} {q('http://127.0.0.1' + s.health_path)}"


def on_socket(s, socket: str) -> str:
    """curl arguments reaching the health path on a unix socket, bypassing nginx."""
    return f"--unix-socket {q(socket)} {q('http://localhost' + s.health_path)}"
