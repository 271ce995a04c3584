"""The health gate: what "healthy" means and where it is asked.

The gate after a switch is shell, `healthy WANT PROBE` in deploy/remote/lib.sh: it polls
PROBE (`probe_nginx`: through the host's own nginx) until the answer is good (2xx from
health_path, or below 500 from / when none is set) and (when WANT is given) carries the header
`X-Flasksample-Release: WANT` (added by the kit's gunicorn config, deploy/kit/gunicorn_conf.py),
three times in a row, or fails after HEALTH_TIMEOUT seconds. `values(s)` gives it what it needs.

Before the switch, the preflight (deploy/kit/preflight.py, run by prepare.sh as the app runs)
loads the new release as a gunicorn worker does and asks it the same question in-process;
`preflight_argv` is its command line, `zygote_values` what its warm form needs.
"""
from __future__ import annotations

from deploy import layout


def top(s) -> int:
    """A good answer's status is from 200 to below this: with health_path set it must be 2xx;
    without, / must answer below 500 (a login redirect or a 404 is an app that runs; a 500 is
    not)."""
    return 300 if s.health_path else 500


def host_header(s) -> str:
    """The Host the health check sends through nginx: the first plain domain, or localhost."""
    return next((d for d in s.domains if d != "_" and not d.startswith("*")), "localhost")


def values(s) -> dict:
    # With TLS on, port 80 redirects to https://NAME/…: followed to 127.0.0.1:443 (-k: our
    # own nginx on loopback).
    return {"HEALTH_TIMEOUT": s.health_timeout, "HEALTH_HOST": host_header(s),
            "HEALTH_PATH": s.gate_path, "HEALTH_TOP": top(s),
            "HEALTH_TLS": s.tls != "off"}


def preflight_argv(s, app_dir: str, gunicorn_argv: list[str]) -> list[str]:
    """The preflight of the release in `app_dir`: its venv's python runs the kit's preflight.py
    with gunicorn's own options for it (`gunicorn_argv`, as the process manager would start it:
    deploy/gunicorn.py); the WSGI target stays last."""
    return [f"{app_dir}/.venv/bin/python", layout.kit_file(app_dir, "preflight.py"), s.gate_path,
            str(top(s)), str(s.health_timeout), *gunicorn_argv[1:]]


def zygote_values(s, argv: list[str]) -> dict:
    """The warm preflight: the same preflight (`argv`, from preflight_argv), forked by the
    running service's zygote (deploy/kit/zygote.py) when it can; its time limit is the cold
    one's (the transient unit's RuntimeMaxSec, supervisor's timeout)."""
    return {"PREFLIGHT_ARGV": argv, "PREFLIGHT_ZYGOTE": layout.zygote_socket(s),
            "PREFLIGHT_LIMIT": s.health_timeout + 2}
