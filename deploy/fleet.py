"""The hosts of a run: who they are (`-H` or `servers:`), their roles, and running a task
once for all of them, in parallel with a bound.

Fabric calls a task once per `-H` host, one after another, each with a Connection built from
that entry. A health-gated deploy needs the whole group at once (one release id, prepare
everywhere in parallel, switch in batches, all or nothing), so `@on_hosts` runs the task body
the first time with every host of the run and makes Fabric's further calls for the same
task return at once. Hosts are never matched by name against Fabric's Connection (whose
`original_host` drops `user@` and `:port`): `-H deploy@a,deploy@b`, `-H a,b` with `user:`
in the config, ssh_config aliases and `servers:` entries all give one group.

Without `-H`, the hosts come from `servers: {web: [...], lb: [...]}`; with `-H`, the hosts
given there (a name listed under `servers.lb` is a load balancer, every other one a web host).
"""
from __future__ import annotations

import functools
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable

from typing import TYPE_CHECKING

from deploy.cli import kit_task
from deploy.errors import KitError

if TYPE_CHECKING:  # imported when a task resolves its hosts: `fab --list` needs neither
    from fabric import Connection

    from deploy import settings as settings_mod
    from deploy.runner import Remote

# Hosts worked on at once; the `parallel` setting of the run sets it (see `resolve`).
_limit = 10
_skips: dict[str, int] = {}
_lock = threading.Lock()


@dataclass(frozen=True)
class HostRef:
    """One host as written: `[user@]name[:port]`; `name` is the label (settings, output)."""

    text: str
    name: str
    user: str | None = None
    port: int | None = None


def parse_host(text: str, where: str = "-H") -> HostRef:
    from deploy import settings as settings_mod

    m = settings_mod.HOST_RE.fullmatch(text.strip())
    if not m:
        raise KitError(f"{text!r} in {where} is not a host",
                       "write [user@]host[:port], e.g. deploy@web1.example.org")
    port = int(m["port"]) if m["port"] else None
    if port is not None and not 1 <= port <= 65535:
        raise KitError(f"{text!r} in {where} has port {port}", "use a port from 1 to 65535")
    return HostRef(text.strip(), m["name"], m["user"], port)


def unique(refs: list[HostRef], where: str) -> list[HostRef]:
    """Each host once (first spelling wins); one host named with two users is an error."""
    seen: dict[str, HostRef] = {}
    for ref in refs:
        first = seen.setdefault(ref.name, ref)
        if (first.user, first.port) != (ref.user, ref.port) and ref.user and first.user:
            raise KitError(f"{ref.name} is named twice in {where} ({first.text}, {ref.text})",
                           "name each host once")
    return list(seen.values())


@dataclass(frozen=True)
class Targets:
    """Who a run works on: web hosts, load balancers, and every web host of `servers:` (the
    load balancer's upstream, which may be more than the run's web hosts when -H picks some)."""

    web: list[HostRef]
    lb: list[HostRef]
    members: list[HostRef]


def targets(servers: dict, cli: list[str]) -> Targets:
    """The run's hosts from `-H` entries (`cli`) or, without them, from `servers:`."""
    web_cfg = unique([parse_host(h, "servers.web") for h in servers.get("web", [])], "servers.web")
    lb_cfg = unique([parse_host(h, "servers.lb") for h in servers.get("lb", [])], "servers.lb")
    if cli:
        refs = unique([parse_host(h) for h in cli], "-H")
        lb_names = {r.name for r in lb_cfg}
        web = [r for r in refs if r.name not in lb_names]
        lb = [r for r in refs if r.name in lb_names]
    else:
        web, lb = web_cfg, lb_cfg
    if not web and not lb:
        raise KitError("no hosts to work on",
                       "name them with fab -H HOST (or -H h1,h2), or list them in fabric.yaml "
                       "as servers: {web: [web1, web2], lb: [lb1]}")
    return Targets(web, lb, web_cfg or web)


def cli_hosts() -> list[str]:
    """The host strings given to `fab -H`, or [] when not run from the `fab` program."""
    try:
        from fabric.main import program

        value = program.core[0].args.hosts.value
    except Exception:
        return []
    return [h for h in (value or "").split(",") if h.strip()]


def first_call(task: str, calls: int) -> bool:
    """True for the first of the `calls` calls Fabric makes of `task` in this run."""
    with _lock:
        if _skips.get(task, 0) > 0:
            _skips[task] -= 1
            return False
        _skips[task] = calls - 1
        return True


# The run's connections by host as written: a later task of the same run (`fab setup deploy`)
# takes the one an earlier task opened (its key checked then) instead of logging in again
# (handshake + the server's login, ~0.1 s a host).
_connections: dict[str, "Connection"] = {}


def connection(c, ref: HostRef) -> Connection:
    """A Connection for `ref` with the run's config (ssh_config, -i, user:, timeouts), running
    commands with the kit's runner (no polling); the run's open one for `ref` if there is one."""
    from fabric import Connection

    from deploy.runner import EventRunner

    known = _connections.get(ref.text)
    if known is not None and known.is_connected:
        return known
    conn = Connection(ref.text, config=c.config)
    conn.config.runners.remote = EventRunner
    _connections[ref.text] = conn
    return conn


@dataclass
class Fleet:
    """The hosts of one run, connected, with their validated settings."""

    web: list[Remote]
    lb: list[Remote]
    settings_for: Callable[[Remote], "settings_mod.Settings"]
    members: list["Member"] = field(default_factory=list)
    # web hosts of servers: that this run does not work on (-H picked others), not connected
    others: list[Remote] = field(default_factory=list)

    @property
    def hosts(self) -> list[Remote]:
        return self.web + self.lb

    @property
    def first(self):
        """Settings of the first host: for run-wide values (switch_batch, the app)."""
        return self.settings_for(self.hosts[0])


@dataclass(frozen=True)
class Member:
    """A web host as the load balancer sees it: its label and the address it is reached at."""

    name: str
    address: str


def resolve(c, task: str, roles: tuple[str, ...] = ("web",), *, key: str | None = None,
            connect: bool = True) -> Fleet | None:
    """The run's hosts for `task` (those of `roles`), settings validated for every host
    before any connection, then every host connected (its key checked) before any is
    touched. None when an earlier call of the same task already did the work."""
    from deploy import settings as settings_mod
    from deploy.runner import Remote

    cli = cli_hosts()
    if not first_call(key or task, max(1, len(cli))):
        return None
    base = settings_mod.load(c.config)
    t = targets(base.servers, cli)
    web = [r for r in t.web if "web" in roles]
    lb = [r for r in t.lb if "lb" in roles]
    if not web and not lb:
        wanted = " or ".join(roles)
        raise KitError(f"`fab {task}` works on {wanted} hosts and this run has none",
                       f"name them with -H or list them under servers: {roles[0]}: [...]")
    # each host once (a web host is usually a member too): its spelling in the run wins
    refs = list({r.name: r for r in t.members + web + lb}.values())
    by_name = {r.name: settings_mod.load(c.config, host=r.name) for r in refs}
    global _limit
    _limit = base.parallel
    conns = {r.name: connection(c, r) for r in refs}
    for r in web:  # before any connection: the app must not be the account fab logs in as
        if conns[r.name].user == by_name[r.name].app_name:
            raise KitError(f"{r.name}: app_name '{conns[r.name].user}' is the account fab logs in "
                           "as; the app would share its rights", "give the app a name of its own")
    members = [Member(r.name, by_name[r.name].upstream_address or conns[r.name].host)
               for r in t.members]
    in_run = {r.name for r in web + lb}

    def remote(r: HostRef) -> Remote:
        return Remote(conns[r.name], settings=by_name[r.name])

    fleet = Fleet([remote(r) for r in web], [remote(r) for r in lb],
                  lambda remote: by_name[remote.label], members,
                  [remote(r) for r in t.members if r.name not in in_run])
    if connect:
        connect_in_background(fleet.hosts)
    return fleet


def connect_in_background(remotes: list[Remote]) -> None:
    """Connect every host (as `each` does) while the task goes on with its local work
    (imports, templates, packing): the first use of any of them waits until all are
    connected, and raises what `each` raised, so a host that cannot be reached or whose key
    is refused still stops the task before any host is touched."""
    outcome: list[BaseException] = []

    def work():
        try:
            each(remotes, lambda r: r.open())
        except BaseException as e:  # handed to the task's thread by wait()
            outcome.append(e)

    thread = threading.Thread(target=work, name="kit-connect", daemon=True)

    def wait():
        thread.join()
        if outcome:
            raise outcome[0]
        for r in remotes:
            r.pending = None

    for r in remotes:
        r.pending = wait
    thread.start()


def on_hosts(roles: tuple[str, ...] = ("web",), connect: bool = True, check=None, **task_kwargs):
    """Declare a fab task whose body runs once with the run's `Fleet` instead of once per host:

        @on_hosts(roles=("web", "lb"), help={...})
        def setup(fleet): ...

    roles: the hosts the body gets; connect=False leaves connecting to the body (a host that
    does not answer is then the body's to report); check(**task_args): validates the task's
    own arguments before any connection.
    """

    def decorate(fn):
        key = f"{fn.__module__}.{fn.__qualname__}"
        label = task_kwargs.get("name") or fn.__name__

        @functools.wraps(fn)
        def body(c, *args, **kwargs):
            if check:
                check(**kwargs)
            fleet = resolve(c, label, roles, key=key, connect=connect)
            if fleet is None:
                return None
            return fn(fleet, *args, **kwargs)

        return kit_task(**task_kwargs)(body)

    return decorate


def each(remotes: list, fn, parallel: bool = True, bounded: bool = True) -> list:
    """Call fn(remote) for every host (at most `parallel` at once, unless not `bounded`: a
    follower that never ends), re-raising the first error after all end (several errors: one
    line naming each)."""
    if len(remotes) <= 1 or not parallel:
        return [fn(r) for r in remotes]
    with ThreadPoolExecutor(max_workers=min(_limit if bounded else len(remotes), len(remotes))) as pool:
        futures = [pool.submit(fn, r) for r in remotes]
        results, errors = [], []
        for fut in futures:
            try:
                results.append(fut.result())
            except KitError as e:
                if not any(e is seen for seen in errors):  # hosts waiting on one connect
                    errors.append(e)
                results.append(None)
    if errors:
        raise errors[0] if len(errors) == 1 else KitError(
            f"{len(errors)} hosts failed: " + " | ".join(str(e) for e in errors))
    return results


def remotes_for_run(c, task: str) -> list[Remote] | None:
    """Every host of the run, whatever its role, not connected (`fab settings`)."""
    fleet = resolve(c, task, roles=("web", "lb"), connect=False)
    return None if fleet is None else fleet.hosts
