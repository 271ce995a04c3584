"""flasksample's tasks — the table of contents (`flasksample --list` or `fab --list`); the work is in deploy/.

    fab -H deploy@web1 setup deploy        set up a bare Debian/Ubuntu host, ship the app
    fab -H web1,web2 deploy                 several hosts: prepared in parallel, switched together
    fab setup deploy                        the hosts of servers: {web: [...], lb: [...]} in fabric.yaml
    fab -H web1 status | logs -f | rollback | restart | releases | audit
    fab -H web1 trust [--fingerprint SHA256:…]   check and record a host's SSH key
    fab -H web1 env.set SECRET_KEY | env.list | env.unset NAME   the app's secrets on the server
    fab -H web1 tls.renew                   renew the ACME certificate now (graceful reload)
    fab sandbox.up                          a local throwaway Debian host to try it on
"""
from invoke import Collection
from invoke.exceptions import Exit

from deploy.cli import kit_task, say
from deploy.errors import KitError
from deploy.fleet import Fleet, each, on_hosts
from deploy.sandbox.tasks import sandbox as sandbox_ns
from deploy.tasks import secrets
from deploy.tasks import tls as certificates

# Each task imports the modules it works with when it runs (jinja2, cryptography, the deploy
# and sandbox code…): `fab --list`, and every task's start, load only this table and what it
# needs (tests/unit/test_imports.py).


@on_hosts(roles=("web", "lb"), help={
    "check": "only print what setup would change on the app and lb hosts (with a diff of each "
             "file); change nothing; exit 1 if anything would change"})
def setup(fleet, check=False):
    """Turn bare Debian/Ubuntu servers into app hosts, and lb hosts into the load balancer
    over them (idempotent; reports each change)."""
    from deploy import envfile
    from deploy.tasks import setup as provision

    if check:
        drift = [r.label for r, changes in zip(fleet.web, each(
            fleet.web, lambda r: provision.check(r, fleet.settings_for(r))))
            if any(ch.changed for ch in changes)]
        if fleet.lb:
            from deploy.tasks import balance

            drift += balance.check_balancers(fleet)
        if drift:
            raise KitError(f"setup would change {', '.join(drift)}",
                           "review the diff above, then run fab setup")
        return
    found = each(fleet.web, lambda r: provision.setup(
        r, fleet.settings_for(r), extra=[envfile.block_probe(fleet.settings_for(r))]))
    seen = dict(zip((r.label for r in fleet.web), found))
    each(fleet.web, lambda r: secrets.sync_settings(r, fleet.settings_for(r), seen[r.label]))  # env:
    if fleet.lb:
        from deploy.tasks import balance

        balance.setup_balancers(fleet)


@on_hosts(roles=("web", "lb"),  # the hosts connect while the deploy code loads and packs the app
          help={"force": "break a deploy lock left by a dead deploy"})
def deploy(fleet, force=False):
    """Ship the app: new release, health-gated zero-downtime switch (batch by batch through
    the load balancer with switch_batch), automatic rollback of every host."""
    from deploy.tasks import balance

    balance.deploy(fleet, force=force)


def _check_release(to=None, **_):
    from deploy import release

    return to and release.checked(to)


@on_hosts(check=_check_release,
          help={"to": "release id to go back to (default: the one live before the last switch)",
                "force": "break a deploy lock left by a dead deploy"})
def rollback(fleet, to=None, force=False):
    """Switch back to the previous release (or --to RELEASE), health-gated."""
    from deploy.tasks import deploy as deployer

    deployer.rollback(fleet.web, fleet.settings_for, to=to, force=force)


def _show_on_each(fleet: Fleet, task, build, parallel=True):
    """Run the script `build(settings)` on every web host of the run and print its output."""
    from deploy.tasks import deploy as deployer

    each(fleet.web, lambda r: deployer.show(r, r.must(build(fleet.settings_for(r)), task)), parallel)


@on_hosts()
def restart(fleet):
    """Restart the app's gunicorn (no request dropped) and wait until it is healthy."""
    from deploy import audit as audit_log, service
    from deploy.lock import holder

    who = holder()
    _show_on_each(fleet, "restart",
                  lambda s: service.restart_script(s) + audit_log.append_line(s, who, "restart") + "\n")


def _check_number(number=50, **_):
    if not str(number).isdigit():
        raise KitError(f"-n {number!r} is not a number of entries", "use e.g. fab audit -n 100")


@on_hosts(check=_check_number, help={"number": "how many entries per host (default 50)"})
def audit(fleet, number=50):
    """Who changed what and when on each host: setup, deploy, rollback, restart, env, exec."""
    from deploy import audit as audit_log, report

    for r in fleet.web:
        out = r.must(audit_log.show_script(fleet.settings_for(r), int(number)), "reading the audit log")
        entries = [line for line in out.lines if line and not line.startswith("::")]
        for line in entries or ["no audit entries yet"]:
            report.host_say(r.label, "  " + (audit_log.format_entry(line) if entries else line))


@on_hosts(roles=("web", "lb"), connect=False)
def status(fleet):
    """One table for all hosts: release, process state, health, lock; drift flagged."""
    from deploy.tasks import overview

    for line in overview.status(fleet):
        say(line)


@on_hosts()
def releases(fleet):
    """The releases on the server (current marked) and the last deploys."""
    from deploy import release

    _show_on_each(fleet, "releases", release.list_script, parallel=False)


def _check_logs(since=None, number=50, **_):
    from deploy import service

    service.check_since(since)
    service.lines_count(number)


@on_hosts(roles=("web", "lb"), check=_check_logs,
          help={"follow": "keep printing new lines", "number": "how many lines per host (default 50)",
                "since": "from this time on, e.g. '10 min ago' (both managers and nginx)",
                "web": "nginx's access and error logs instead (lb hosts' too)",
                "process": "the log of one of processes: instead, e.g. worker"})
def logs(fleet, follow=False, number=50, since=None, web=False, process=None):
    """Every web host's app log, merged as it arrives, each line prefixed with its host."""
    from deploy import service
    from deploy.tasks import overview

    overview.logs(fleet, follow, service.lines_count(number), since, web, process)


@on_hosts(roles=("web", "lb"), connect=False,
          help={"fingerprint": "expected SHA256:… of the host key: check it, no prompt (CI)",
                "yes": "record an unknown key without asking (a changed key needs --fingerprint)"})
def trust(fleet, fingerprint=None, yes=False):
    """Fetch each host's SSH key, show its SHA256 fingerprint, record it in known_hosts once confirmed."""
    from deploy import trust as hostkeys

    for r in fleet.hosts:
        hostkeys.trust_host(r.conn, r.label, fingerprint, yes, say, hostkeys.ask)


@on_hosts(name="exec", help={"command": "the command line, quoted: 'flask --app shop init-db'",
                             "interactive": "give it a terminal (e.g. 'flask shell')"})
def exec_(fleet, command, interactive=False):
    """Run COMMAND in the current release, as the app (user, venv, env, sandbox); exit code passes through."""
    from deploy.tasks import apptasks

    codes = [apptasks.exec_on(r, fleet.settings_for(r), command, interactive) for r in fleet.web]
    if any(codes):
        raise Exit(code=next(code for code in codes if code))


@kit_task(name="settings")
def show_settings(c):
    """The effective value of every setting (per host with -H), where it comes from, its meaning."""
    from fabric import Connection

    from deploy import settings
    from deploy.fleet import remotes_for_run

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


ns = Collection(setup, deploy, rollback, restart, audit, status, releases, logs, trust, show_settings,
                init_app, exec_)
ns.add_collection(sandbox_ns)
ns.add_collection(secrets.env_ns)
ns.add_collection(certificates.tls_ns)
