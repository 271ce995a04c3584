"""`fab deploy` and `fab rollback` across the hosts of one run.

deploy: pack once while every host connects; on every host in parallel upload + prepare (lock,
unpack, venv, preflight); if any host fails, undo the prepared release everywhere. Then switch
in batches of
`switch_batch` hosts (0 = all at once); if a host fails its health gate, or the run is
interrupted (Ctrl-C), every host switched by this run goes back to its previous release and
the hosts not yet switched are undone. A host that cannot be reached for its undo does not
stop the others'.
"""
from __future__ import annotations

import base64
import time
from concurrent.futures import ThreadPoolExecutor

from deploy import health, package, release, report
from deploy.errors import KitError
from deploy.fleet import each
from deploy.lock import holder
from deploy.protocol import is_release
from deploy.runner import Outcome, Remote


def show(remote: Remote, out: Outcome) -> None:
    for line in out.lines:
        report.host_say(remote.label, "  " + line)
    if out.steps:
        report.host_say(remote.label, "  " + ", ".join(f"{n} {t:.2f}s" for n, t in out.steps))


def run_step(remote: Remote, text: str, what: str, stdin: str | None = None) -> Outcome:
    out = remote.run(text, stdin=stdin, what=what)
    show(remote, out)
    if not out.ok:
        raise remote.failure(out, what)
    return out


def previous_of(out: Outcome) -> str:
    """The release live before the switch, as the host reported it ('' if none or malformed)."""
    prev = out.marker("previous") or ""
    return prev if is_release(prev) else ""


def url_of(remote: Remote, s) -> str:
    """The app's address: its first domain when one is set, else the host's own."""
    name = health.host_header(s)
    scheme = "http" if s.tls == "off" else "https"
    return f"{scheme}://{remote.conn.host if name == 'localhost' else name}/"


def batches(items: list, size: int) -> list[list]:
    size = size or len(items)
    return [items[i:i + size] for i in range(0, len(items), size)]


def quietly(fn):
    """fn(remote), with a failure reported instead of raised: one unreachable host must not
    stop the undo on the others."""
    def run(r: Remote):
        try:
            fn(r)
        except (KitError, OSError, EOFError) as e:
            report.host_say(r.label, f"warning: could not undo this host: {e}")
    return run


def deploy(remotes: list[Remote], settings_for, force: bool = False, rotation=None) -> str:
    """`rotation` (deploy.tasks.balance.Rotation): takes each batch out of the load balancer
    before it switches and puts it back after; its caller restores it when this raises."""
    started = time.time()
    first = settings_for(remotes[0])
    # Every host is connected (its key checked) while the app is packed, and before anything
    # is sent to any (the task started connecting them in the background: deploy/fabfile.py;
    # connect() waits for all). An error packing waits for the connections, then wins.
    with ThreadPoolExecutor(max_workers=1) as pool:
        connected = pool.submit(each, remotes, lambda r: r.connect())
        pkg = package.build(first)
        connected.result()
    who = holder()
    archive = base64.b64encode(pkg.data).decode()
    report.host_say(",".join(r.label for r in remotes),
                    f"deploying release {pkg.release} ({len(pkg.data) // 1024} KiB)")
    if pkg.note:
        report.host_say("local", f"note: {pkg.note}")

    def prepare(r: Remote):
        s = settings_for(r)
        # release_command: once per deploy, on the first host
        run_step(r, release.prepare_script(s, pkg.release, pkg.req_hash, who, force,
                                           release_command=r is remotes[0]), "prepare",
                 stdin=archive)

    def abort(r: Remote):
        r.run(release.abort_script(settings_for(r), pkg.release, who))

    try:
        each(remotes, prepare)
    except (KitError, KeyboardInterrupt):
        each(remotes, quietly(abort))
        raise

    switched: list[tuple[Remote, str]] = []

    def switch(r: Remote):
        out = run_step(r, release.switch_script(settings_for(r), pkg.release, who), "switch")
        switched.append((r, previous_of(out)))

    def switch_back(r: Remote, prev: str):
        run_step(r, release.switch_script(settings_for(r), prev, who, verb="rolled back to",
                                          lock_first=True), "rollback")

    pending = list(remotes)
    try:
        for batch in batches(remotes, first.switch_batch):
            if rotation:
                rotation.drain(batch)
            each(batch, switch)
            if rotation:
                rotation.undrain(batch)
            pending = [r for r in pending if r not in batch]
    except (KitError, KeyboardInterrupt):
        # Hosts still pending were never switched by this run (a failed switch undoes itself
        # on the host, and abort never removes the release `current` points to).
        each(pending, quietly(abort))
        back = dict((r, prev) for r, prev in switched if prev)
        if back:
            report.host_say("all", "a host failed: switching the hosts already on "
                                   f"{pkg.release} back to their previous release")
            each(list(back), quietly(lambda r: switch_back(r, back[r])))
        raise
    took = time.time() - started
    for r in remotes:
        report.host_say(r.label, f"release {pkg.release} is live: {url_of(r, settings_for(r))} ({took:.2f}s)")
    return pkg.release


def rollback(remotes: list[Remote], settings_for, to: str | None = None, force: bool = False) -> None:
    """Every host's target is found first, so a host with nothing to go back to stops the
    rollback before any host has switched."""
    who = holder()
    if to:
        release.checked(to)  # before any connection is used

    def target_of(r: Remote) -> str:
        out = r.must(release.rollback_target_script(settings_for(r), to), "finding the release to roll back to")
        target = out.lines[-1].strip() if out.lines else ""
        if not is_release(target):
            raise KitError(f"{r.label}: the host named {target!r} as the release to roll back to",
                           "pick one from fab releases and run fab rollback --to RELEASE")
        return target

    targets = dict(zip(remotes, each(remotes, target_of)))

    def one(r: Remote):
        target = targets[r]
        report.host_say(r.label, f"rolling back to {target}")
        run_step(r, release.switch_script(settings_for(r), target, who, verb="rolled back to",
                                          lock_first=True, force=force), "rollback")
        report.host_say(r.label, f"release {target} is live")

    each(remotes, one)
