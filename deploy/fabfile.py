"""flasksample's tasks — the table of contents (`flasksample --list` or `fab --list`); the work is in deploy/.

    fab -H deploy@web1 setup deploy        set up a bare Debian/Ubuntu host, ship the app
    fab -H web1,web2 deploy                 several hosts: prepared in parallel, switched together
    fab -H web1 status | logs -f | rollback | restart | releases
    fab -H web1 trust [--fingerprint SHA256:…]   check and record a host's SSH key
    fab -H web1 env.set SECRET_KEY | env.list | env.unset NAME   the app's secrets on the server
    fab sandbox.up                          a local throwaway Debian host to try it on
"""
from fabric import Connection
from invoke import Collection

from deploy import release, service, settings
from deploy.tasks import deploy as deployer
from deploy.tasks import secrets
from deploy.tasks import setup as provision
from deploy import trust as hostkeys
from deploy.cli import kit_task, say
from deploy.fleet import each, remotes_for_run, remotes_with_settings
from deploy.sandbox.tasks import sandbox as sandbox_ns


@kit_task
def setup(c):
    """Turn a bare Debian/Ubuntu server into an app host (idempotent; reports each change)."""
    remotes, settings_for = remotes_with_settings(c, "setup")
    if remotes:
        each(remotes, lambda r: provision.setup(r, settings_for(r)))
        each(remotes, lambda r: secrets.sync_settings(r, settings_for(r)))  # env: → env file


@kit_task(help={"force": "break a deploy lock left by a dead deploy"})
def deploy(c, force=False):
    """Ship the app: new release, health-gated zero-downtime switch, automatic rollback."""
    remotes, settings_for = remotes_with_settings(c, "deploy")
    if remotes:
        deployer.deploy(remotes, settings_for, force=force)


@kit_task(help={"to": "release id to go back to (default: the one before current)",
                "force": "break a deploy lock left by a dead deploy"})
def rollback(c, to=None, force=False):
    """Switch back to the previous release (or --to RELEASE), health-gated."""
    remotes, settings_for = remotes_with_settings(c, "rollback")
    if remotes:
        deployer.rollback(remotes, settings_for, to=to, force=force)


def _show_on_each(c, task, build, parallel=True):
    """Run the script `build(settings)` on every host of the run and print its output."""
    remotes, settings_for = remotes_with_settings(c, task)
    if remotes:
        each(remotes, lambda r: deployer.show(r, r.must(build(settings_for(r)), task)), parallel)


@kit_task
def restart(c):
    """Restart the app's gunicorn (no request dropped) and wait until it is healthy."""
    _show_on_each(c, "restart", service.restart_script)


@kit_task
def status(c):
    """Service state, current release, uptime, workers and the health answer."""
    _show_on_each(c, "status", service.status_script, parallel=False)


@kit_task
def releases(c):
    """The releases on the server (current marked) and the last deploys."""
    _show_on_each(c, "releases", release.list_script, parallel=False)


@kit_task(help={"follow": "keep printing new lines", "number": "how many lines (default 50)",
                "since": "journalctl time, e.g. '10 min ago'", "web": "nginx's access and error logs instead"})
def logs(c, follow=False, number=50, since=None, web=False):
    """The app's log (journalctl -u <app> or supervisor's log); -w for nginx's."""
    remotes, settings_for = remotes_with_settings(c, "logs")
    if remotes:
        for r in remotes:
            r.run(service.logs_script(settings_for(r), follow, int(number), since, web), stream=True)


@kit_task(help={"fingerprint": "expected SHA256:… of the host key: check it, no prompt (CI)",
                "yes": "record an unknown key without asking (a changed key needs --fingerprint)"})
def trust(c, fingerprint=None, yes=False):
    """Fetch each host's SSH key, show its SHA256 fingerprint, record it in known_hosts once confirmed."""
    for r in remotes_for_run(c, "trust") or []:
        hostkeys.trust_host(r.conn, r.label, fingerprint, yes, say, hostkeys.ask)


@kit_task(name="settings")
def show_settings(c):
    """The effective value of every setting (per host with -H), where it comes from, its meaning."""
    hosts = [None] if not isinstance(c, Connection) else \
        [r.label for r in (remotes_for_run(c, "settings") or [])]
    docs = {name: text for name, _, text in settings.describe()}
    for host in hosts:
        s = settings.load(c.config, host=host)
        say(f"[{host}]" if host else "[every host] (add -H HOST for per-host values)")
        for name in docs:
            value = getattr(s, name)
            where = settings.origin(c.config, name, host)
            if where == "default" and value != settings.default_of(name):
                where = "detected"
            say(f"  {name:<22} {value!r:<32} {where:<24} {docs[name]}")


@kit_task(name="init", help={"directory": "the app's repository (default: the current directory)"})
def init_app(c, directory="."):
    """Write fabric.yaml (WSGI entry, requirements, static dir detected) + fabfile.py here."""
    from pathlib import Path

    from deploy import init

    for path in init.init(Path(directory)):
        say(f"wrote {path}")
    say("next: read fabric.yaml, commit both files, then "
        "`flasksample -H deploy@HOST trust setup deploy`")


ns = Collection(setup, deploy, rollback, restart, status, releases, logs, trust, show_settings,
                init_app)
ns.add_collection(sandbox_ns)
ns.add_collection(secrets.env_ns)
