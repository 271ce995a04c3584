"""`fab sandbox.up / sandbox.down / sandbox.list`: the sandbox's task namespace (a few lines each)."""
from invoke import Collection

from deploy.cli import kit_task, say
from deploy.sandbox import image


@kit_task(help={"name": "host name (default: next free fsN), ^[a-z][a-z0-9-]{0,15}$",
                "reuse": "if a running host has that name, use it instead of failing",
                "release": f"Debian release: {', '.join(f'{r} ({v})' for r, v in image.RELEASES.items())}; "
                           f"default {image.DEFAULT_RELEASE}"})
def up(c, name=None, reuse=False, release=image.DEFAULT_RELEASE):
    """Start a throwaway Debian host (12 by default, --release trixie for 13) and print how to reach it."""
    from deploy.sandbox import manager

    running = {h.name: h for h, state in manager.host_states() if state == "running"}
    host = running[name] if reuse and name in running else manager.up(name, log=say, release=release)
    say(f"{host.name} is up at {host.address} ({image.RELEASES[host.release]}, user {host.user}, "
        f"key {host.key_path})")
    say(f"  ssh -F {host.ssh_config} {host.name}")
    say(f"  fab -S {host.ssh_config} -H {host.name} setup deploy")


@kit_task(help={"name": "host to remove (default: all sandbox hosts)"})
def down(c, name=None):
    """Stop and remove one sandbox host, or all of them."""
    from deploy.sandbox import manager

    removed = manager.down(name)
    say(f"removed {', '.join(removed)}" if removed else "no sandbox hosts to remove")


@kit_task(name="list")
def list_(c):
    """One line per sandbox host: name, address, state, release."""
    from deploy.sandbox import manager

    hosts = manager.host_states()
    if not hosts:
        say("no sandbox hosts (start one: fab sandbox.up)")
    for host, status in hosts:
        say(f"{host.name:<17} {host.address:<13} {status:<8} {host.release}")


sandbox = Collection("sandbox", up, down, list_)
