"""The health gate: a bash function that waits until the app answers its health check.

`wait_function(s)` defines `kit_healthy RELEASE TIMEOUT CURL_ARGS…`: it polls with curl until
the answer is good (2xx from health_path, or below 500 from / when none is set) and (when
RELEASE is given) carries the header `X-Flasksample-Release: RELEASE`, three times in a row,
or fails after TIMEOUT seconds — at once if KIT_WATCH_PID is set and that process has died.
Used through nginx after a switch, and on a private socket before a new release takes any
traffic.
"""
from __future__ import annotations

from deploy.shell import q


def wait_function(s) -> str:
    # The release is proven by the header the kit's gunicorn config adds to every answer
    # (deploy/kit/gunicorn_conf.py), so the app needs no health endpoint. With health_path set
    # its answer must be 2xx; without, / must answer below 500 (a login redirect or a 404 is an
    # app that runs; a 500 is not).
    top = 300 if s.health_path else 500
    return r"""kit_healthy() {
  local want="$1" timeout="$2" good=0 out code got deadline
  shift 2
  deadline=$(( $(date +%s%N) / 1000000 + timeout * 1000 ))
  while [ $(( $(date +%s%N) / 1000000 )) -lt "$deadline" ]; do
    if [ -n "${KIT_WATCH_PID:-}" ] && ! kill -0 "$KIT_WATCH_PID" 2>/dev/null; then
      echo "the new release's gunicorn exited before answering"; return 1
    fi
    out=$(curl -s -m 2 -o /dev/null -D - -w 'kit-status %{http_code}\n' "$@" 2>/dev/null | tr -d '\r') || true
    code=$(sed -n 's/^kit-status //p' <<<"$out")
    got=$(sed -n 's/^[Xx]-[Ff]lasksample-[Rr]elease: *//p' <<<"$out" | head -n1)
    if [ "${code:-0}" -ge 200 ] && [ "${code:-0}" -lt TOP ] && { [ -z "$want" ] || [ "$got" = "$want" ]; }; then
      good=$((good + 1)); [ "$good" -ge 3 ] && return 0
    else
      good=0
    fi
    sleep 0.02
  done
  echo "last health answer: HTTP ${code:-none}, release ${got:-none}"
  return 1
}""".replace("TOP", str(top))


def host_header(s) -> str:
    name = next((d for d in s.domains if d != "_" and not d.startswith("*")), "localhost")
    return name


def through_nginx(s) -> str:
    """curl arguments reaching the health path through the host's own nginx. With TLS on, port
    80 redirects to https://NAME/…: followed to 127.0.0.1:443 (-k: our own nginx on loopback)."""
    name = host_header(s)
    tls = f"-L -k --resolve {q(name + ':443:127.0.0.1')} " if s.tls != "off" else ""
    return f"{tls}-H {q('Host: ' + name)} {q('http://127.0.0.1' + s.gate_path)}"


def on_socket(s, socket: str) -> str:
    """curl arguments reaching the health path on a unix socket, bypassing nginx."""
    return f"--unix-socket {q(socket)} {q('http://localhost' + s.gate_path)}"
