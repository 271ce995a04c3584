"""Runs a task once for all hosts of a `fab -H a,b,c` call, in parallel where it helps.

Fabric calls a task once per host, one after another. A rolling, health-gated deploy needs
the whole group at once (prepare everywhere in parallel, then switch in batches, and roll
every host back if one fails), so the first call takes the full `-H` list from Fabric's
parser and handles every host; the calls for the other hosts then return at once.
"""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

from fabric import Connection

from deploy.errors import KitError
from deploy.runner import Remote

_handled: set[tuple[str, str]] = set()
_lock = threading.Lock()


def cli_hosts() -> list[str]:
    """The host strings given to `fab -H`, or [] when not run from the `fab` program."""
    try:
        from fabric.main import program

        value = program.core[0].args.hosts.value
    except Exception:
        return []
    return [h for h in (value or "").split(",") if h]


def remotes_for_run(c, task: str) -> list[Remote] | None:
    """Remotes for every host of this run, or None when an earlier call already did them."""
    if not isinstance(c, Connection):
        raise KitError(f"`fab {task}` needs a host", f"run `fab -H HOST {task}` (or -H h1,h2)")
    hosts = cli_hosts()
    if c.original_host not in hosts:
        hosts = [c.original_host]
    with _lock:
        if (task, c.original_host) in _handled:
            return None
        _handled.update((task, h) for h in hosts)
    return [Remote(c) if h == c.original_host else Remote(Connection(h, config=c.config))
            for h in hosts]


def each(remotes: list[Remote], fn, parallel: bool = True) -> list:
    """Call fn(remote) for every host (in threads), re-raising the first error after all end."""
    if len(remotes) <= 1 or not parallel:
        return [fn(r) for r in remotes]
    with ThreadPoolExecutor(max_workers=min(16, len(remotes))) as pool:
        futures = [pool.submit(fn, r) for r in remotes]
        results, errors = [], []
        for fut in futures:
            try:
                results.append(fut.result())
            except KitError as e:
                errors.append(e)
                results.append(None)
    if errors:
        raise errors[0] if len(errors) == 1 else KitError(
            f"{len(errors)} hosts failed: " + " | ".join(str(e) for e in errors))
    return results


def remotes_with_settings(c, task: str):
    """(remotes, settings_for) for this run, or (None, None) when an earlier call did it.

    Settings are validated for every host before any connection; then every host is
    connected (its host key checked) before any host is touched.
    """
    from deploy import settings

    remotes = remotes_for_run(c, task)
    if remotes is None:
        return None, None
    by_host = {r.label: settings.load(c.config, host=r.label) for r in remotes}
    each(remotes, lambda r: r.connect())
    return remotes, lambda r: by_host[r.label]
