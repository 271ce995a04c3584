"""The health gate: what "healthy" means and where it is asked.

The gate itself is shell, `healthy WANT PROBE [ALIVE]` in deploy/remote/lib.sh: it polls
PROBE until the answer is good (2xx from health_path, or below 500 from / when none is set)
and (when WANT is given) carries the header `X-Flasksample-Release: WANT` (added by the kit's
gunicorn config, deploy/kit/gunicorn_conf.py), three times in a row, or fails after HEALTH_TIMEOUT seconds (at once if ALIVE says the process died). The
probes: `probe_nginx` (through the host's own nginx, after a switch) and the preflight's
private socket (prepare.sh). `values(s)` gives them what they need.
"""
from __future__ import annotations


def host_header(s) -> str:
    """The Host the health check sends through nginx: the first plain domain, or localhost."""
    return next((d for d in s.domains if d != "_" and not d.startswith("*")), "localhost")


def values(s) -> dict:
    # With health_path set its answer must be 2xx; without, / must answer below 500 (a login
    # redirect or a 404 is an app that runs; a 500 is not).
    # With TLS on, port 80 redirects to https://NAME/…: followed to 127.0.0.1:443 (-k: our
    # own nginx on loopback).
    return {"HEALTH_TIMEOUT": s.health_timeout, "HEALTH_HOST": host_header(s),
            "HEALTH_PATH": s.gate_path, "HEALTH_TOP": 300 if s.health_path else 500,
            "HEALTH_TLS": s.tls != "off"}
