"""One view of all hosts: `fab status` as one table, `fab logs` merged from every host.

status: every host answers in parallel; one row each (role, release, process state, health,
lock), a host on another release than most is flagged `drift`, an unreachable one says so.
logs: every host's log is read (or followed) in parallel, each line prefixed with its host.
"""
from __future__ import annotations

import re
import sys
import threading
from collections import Counter

from deploy import balancer, service
from deploy.errors import KitError
from deploy.fleet import Fleet, each
from deploy.runner import Remote

HEALTH_CODE = re.compile(r"\(HTTP (\d{3})\)\s*$")


def fields(lines: list[str]) -> dict[str, str]:
    """`name:   value` lines (service.status_script's output) as a dict."""
    out = {}
    for line in lines:
        name, sep, value = line.partition(":")
        if sep and name and " " not in name:
            out[name] = value.strip()
    return out


def web_row(remote: Remote, s) -> dict[str, str]:
    try:
        f = fields(remote.must(service.status_script(s), "reading the status").lines)
    except KitError as e:
        return {"host": remote.label, "role": "web", "note": f"unreachable: {e}"}
    code = HEALTH_CODE.search(f.get("health", ""))
    return {"host": remote.label, "role": "web", "release": f.get("release", "?"),
            "process": f.get("service", "?").split(" (")[0], "health": code[1] if code else "none",
            "uptime": f.get("uptime", ""), "workers": f.get("workers", ""), "lock": f.get("lock", ""),
            "processes": f.get("processes", ""),
            "tls": f.get("tls", ""), "issuer": f.get("issuer", ""), "expires": f.get("expires", "")}


def lb_row(remote: Remote, s) -> dict[str, str]:
    try:
        lines = remote.must(balancer.status_script(s), "reading the load balancer").lines
    except KitError as e:
        return {"host": remote.label, "role": "lb", "note": f"unreachable: {e}"}
    servers = [l for l in lines if l.strip().startswith("server ")]
    down = [l.rsplit("# ", 1)[-1] for l in servers if " down;" in l]
    listed = f"{len(servers)} web host(s) listed" + (f", drained: {', '.join(down)}" if down else "")
    return {"host": remote.label, "role": "lb", "process": fields(lines).get("nginx", "?"),
            "note": listed}


def table(rows: list[dict[str, str]]) -> list[str]:
    """Aligned text rows; web hosts not on the most common release get `drift` in `note`."""
    releases = Counter(r["release"] for r in rows if r.get("release"))
    if len(releases) > 1:
        common = releases.most_common(1)[0][0]
        for r in rows:
            if r.get("release") and r["release"] != common:
                r["note"] = (r.get("note", "") + f" drift: not on {common}").strip()
    cols = ["host", "role", "release", "process", "health", "uptime", "workers", "lock", "note"]
    if any(r.get("processes") for r in rows):  # the app's processes: (name=state)
        cols.insert(cols.index("lock"), "processes")
    cells = [[c.upper() for c in cols]] + [[r.get(c, "") or "-" for c in cols] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(cols))]
    return ["  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip() for row in cells]


def certificate_lines(rows: list[dict[str, str]]) -> list[str]:
    """Below the table, for each host with TLS on: its certificate's names, issuer, expiry."""
    return [f"{r['host']}  tls: {r['tls']}" + (f"; issuer {r['issuer']}; expires {r['expires']}"
                                                if r.get("expires") else "")
            for r in rows if r.get("tls") not in (None, "", "off")]


def status(fleet: Fleet) -> list[str]:
    rows = each(fleet.web, lambda r: web_row(r, fleet.settings_for(r)))
    rows += each(fleet.lb, lambda r: lb_row(r, fleet.settings_for(r)))
    return table(rows) + certificate_lines(rows)


class Prefixed:
    """A stream for one host's output: whole lines, each prefixed `[host] `, written to stdout
    under one lock so lines of different hosts never mix."""

    lock = threading.Lock()

    def __init__(self, host: str, width: int):
        self.prefix = f"[{host}]".ljust(width + 2) + " "
        self.partial = ""

    def write(self, data: str) -> None:
        text = self.partial + data
        *lines, self.partial = text.split("\n")
        if lines:
            with self.lock:
                sys.stdout.write("".join(self.prefix + line + "\n" for line in lines))
                sys.stdout.flush()

    def flush(self) -> None:
        if self.partial:
            self.write("\n")


def logs(fleet: Fleet, follow: bool, lines: int, since: str | None, web: bool,
         process: str | None = None) -> None:
    hosts = fleet.web if not web else fleet.hosts
    width = max(len(r.label) for r in hosts)

    def one(r: Remote):
        out = Prefixed(r.label, width)
        s = fleet.settings_for(r)
        # one of processes: (deploy/service.py) if named, else nginx's (-w) or the app's
        text = service.logs_script(s, follow, lines, since, web and not process, process)
        result = r.run(text, stream=True, out=out)
        out.flush()
        if not result.ok:
            raise r.failure(result, "reading the logs")

    each(hosts, one, bounded=not follow)  # every host followed at once
