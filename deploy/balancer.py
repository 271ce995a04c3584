"""The load balancer's nginx config and the scripts that change it (pure: settings in, text out).

The upstream lists every web host that serves the app; draining marks some `down` and
reloads nginx, which is graceful: new workers stop sending those hosts requests, old workers
finish the requests they have in flight and exit. `change_script` (deploy/remote/lb_change.sh)
waits for exactly those old workers, so once it returns no request is in flight to a drained host.
"""
from __future__ import annotations

import re

from deploy import layout, templates, tlsserver
from deploy.shell import program, q, script
from deploy.steps.site import swap_lines

SERVER_LINE = re.compile(r"\s*server (?P<address>\S+):80 .*;\s+# (?P<name>\S+)\s*$")


def render(s, members, down=frozenset(), tls_ready: bool | None = None) -> str:
    """nginx/lb.conf.j2 for these web hosts (`members`, see deploy.fleet.Member); those named
    in `down` stay listed but get no new requests. `tls_ready`: the certificate is on the
    balancer, so it listens on 443 (default: only with tls: files, see tlsserver.site_ready)."""
    ready = s.tls == "files" if tls_ready is None else tls_ready
    extra = {"members": list(members), "down": set(down), "tls": tlsserver.nginx_tls(s, ready)}
    return templates.render("nginx/lb.conf.j2", s, **extra)


def tls_ready(conf_lines: list[str]) -> bool:
    """Whether a balancer's config (as it is now) listens on 443: a drain keeps it so."""
    return any(line.strip().startswith("listen 443") for line in conf_lines)


def names_in(conf_lines: list[str]) -> list[str]:
    """The web hosts an lb config lists (drained or not), by name, from its server lines."""
    return [m["name"] for line in conf_lines if (m := SERVER_LINE.match(line))]


def read_script(s) -> str:
    """Print the load balancer's config as it is now ('' when there is none yet)."""
    return script(f"cat {q(layout.nginx_site(s))} 2>/dev/null || true")


def change_script(s, content: str, wait: int) -> str:
    """Put `content` in place (nginx -t first; the old file comes back if it fails), reload
    nginx gracefully and wait up to `wait` seconds for the old workers, with the requests
    they had in flight, to finish (deploy/remote/lb_change.sh)."""
    return program("lb_change", {"WAIT": int(wait), "NGINX_PID": layout.NGINX_PID},
                   functions={"site_apply": swap_lines(s, content)})


def status_script(s) -> str:
    """nginx's state and the upstream's server lines on a load balancer."""
    return script(
        "set +e",
        "echo \"nginx: $(systemctl is-active nginx)\"",
        f"grep -E '^\\s*server .*# ' {q(layout.nginx_site(s))} 2>/dev/null",
        "true",
    )
