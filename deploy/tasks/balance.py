"""The load balancer during a run: its setup over the web hosts that serve a release, and the
rotation of a rolling deploy (take a batch out, switch it, put it back; on failure every host
back in).

Which web hosts the balancer lists is read from the balancer itself (its config's server
lines) at the start of a deploy, so a web host just added to `servers:` joins only once it
serves the new release, and one removed from `servers:` leaves.
"""
from __future__ import annotations

from deploy import balancer, release, report
from deploy.errors import KitError
from deploy.fleet import Fleet, Member, each
from deploy.runner import Remote
from deploy.shell import script
from deploy.steps.balancer import ordered as lb_steps
from deploy.tasks import deploy as deployer
from deploy.tasks import setup as provision


def has_release(remote: Remote, s) -> bool:
    out = remote.must(script(f"echo \"{release.current_release(s)}\""), "reading the current release")
    return bool(out.lines and out.lines[-1].strip())


def serving_members(fleet: Fleet) -> list[Member]:
    """The web hosts the balancer should send requests to: those of `servers:` with a release.
    Every one is asked (also those -H left out, e.g. `fab -H lb1 setup`); one outside the run
    that does not answer keeps the place the balancer gives it now."""
    listed = set(listed_names(fleet))

    def serves(r: Remote) -> bool:
        try:
            return has_release(r, fleet.settings_for(r))
        except KitError:
            if r in fleet.web:
                raise
            report.host_say(r.label, "does not answer: kept as the balancer has it "
                                     + ("(in)" if r.label in listed else "(out)"))
            return r.label in listed

    hosts = fleet.web + fleet.others
    asked = dict(zip((r.label for r in hosts), each(hosts, serves)))
    return [m for m in fleet.members if asked.get(m.name, m.name in listed)]


def config_lines(fleet: Fleet) -> list[str]:
    """The (first) balancer's config as it is now; [] without a balancer."""
    if not fleet.lb:
        return []
    lb = fleet.lb[0]
    return lb.must(balancer.read_script(fleet.settings_for(lb)), "reading the load balancer's config").lines


def listed_names(fleet: Fleet) -> list[str]:
    """The web hosts the (first) balancer's config lists now."""
    return balancer.names_in(config_lines(fleet))


def setup_balancers(fleet: Fleet) -> None:
    """`fab setup` on the lb hosts, over the web hosts that serve a release."""
    if not fleet.lb:
        return
    members = serving_members(fleet)
    each(fleet.lb, lambda r: provision.setup(r, fleet.settings_for(r),
                                              lb_steps(fleet.settings_for(r), members)))
    for r in fleet.lb:
        report.host_say(r.label, "load balancer over " + (", ".join(m.name for m in members)
                                                          or "no web host yet (fab deploy adds them)"))


def check_balancers(fleet: Fleet) -> list[str]:
    """`fab setup --check` on the lb hosts (each file's diff, nothing changed): the ones that
    would change."""
    if not fleet.lb:
        return []
    members = serving_members(fleet)
    changes = each(fleet.lb, lambda r: provision.check(r, fleet.settings_for(r),
                                                       lb_steps(fleet.settings_for(r), members)))
    return [r.label for r, chs in zip(fleet.lb, changes) if any(ch.changed for ch in chs)]


class Rotation:
    """Takes batches of web hosts out of every balancer and puts them back (deploy's hook).

    Without a balancer every method does nothing. A batch is never drained when that would
    leave no host in the balancer (switch_batch 0, or a single web host): the web host's own
    switch is already zero-downtime, the drain only spares requests the reload would delay.
    """

    def __init__(self, fleet: Fleet):
        self.fleet = fleet
        conf = config_lines(fleet)
        self.before = set(balancer.names_in(conf)) & {m.name for m in fleet.members}
        self.tls_ready = balancer.tls_ready(conf)
        self.now = set(self.before)
        self.changed = False
        # what each balancer's config is known to say (read now, or written since)
        self.known = {fleet.lb[0].label: conf} if fleet.lb else {}

    def _write(self, names: set[str], down: set[str], what: str) -> None:
        members = [m for m in self.fleet.members if m.name in names]

        def change(lb: Remote) -> bool:
            s = self.fleet.settings_for(lb)
            content = balancer.render(s, members, down, self.tls_ready)
            if self.known.get(lb.label) == content.splitlines():
                return False  # already says so (switch_batch 0: nothing drained, nobody new)
            lb.must(balancer.change_script(s, content, s.proxy_timeout), f"updating the load balancer ({what})")
            self.known[lb.label] = content.splitlines()
            return True

        for lb, wrote in zip(self.fleet.lb, each(self.fleet.lb, change)):
            if wrote:
                self.changed = True
                report.host_say(lb.label, what)

    def drain(self, batch: list[Remote]) -> None:
        names = {r.label for r in batch} & self.now
        if self.fleet.lb and names and self.now - names:
            self._write(self.now, names, "out of the balancer, in-flight requests done: "
                        + ", ".join(sorted(names)))

    def undrain(self, batch: list[Remote]) -> None:
        if not self.fleet.lb:
            return
        self.now |= {r.label for r in batch} & {m.name for m in self.fleet.members}
        self._write(self.now, set(), "in the balancer: " + ", ".join(
            m.name for m in self.fleet.members if m.name in self.now))

    def restore(self) -> None:
        """Every host the balancer listed before the deploy back in, none drained."""
        if self.fleet.lb and self.changed:
            self.now = set(self.before)
            self._write(self.now, set(), "back as before the deploy: every host in the balancer")


def deploy(fleet: Fleet, force: bool = False) -> str:
    """`fab deploy` over the run's web hosts, batch by batch through the balancer when there
    is one; whatever fails, every host the balancer listed is back in it."""
    rotation = Rotation(fleet)
    try:
        return deployer.deploy(fleet.web, fleet.settings_for, force=force, rotation=rotation)
    except BaseException:
        rotation.restore()
        raise
