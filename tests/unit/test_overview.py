"""One view of all hosts (status table, merged logs, env differences) and the balancer's
rotation during a rolling deploy, with fake hosts (no SSH)."""
from deploy import balancer
from deploy.errors import KitError
from deploy.fleet import Fleet, Member
from deploy.runner import Outcome
from deploy.tasks import balance, overview
from deploy.tasks.secrets import _difference


class FakeHost:
    """A Remote stand-in: answers scripts with `answer(script)` lines, records what it ran."""

    def __init__(self, label, answer=lambda text: [], fail=False):
        self.label, self.answer, self.fail, self.ran = label, answer, fail, []

    def must(self, text, what, **kw):
        if self.fail:
            raise KitError(f"{self.label}: cannot connect", "check it")
        self.ran.append(text)
        return Outcome(True, 0, self.answer(text))


def status_lines(release, health="ok (HTTP 200)"):
    return lambda text: [f"release:  {release}", "manager:  systemd", "service:  running (master pid 42)",
                         "uptime:   01:02", "workers:  3", f"health:   {health}", "lock:     free"]


def test_status_is_one_table_and_flags_drift_and_unreachable_hosts(s):
    web = [FakeHost("web1", status_lines("r2")), FakeHost("web2", status_lines("r2")),
           FakeHost("web3", status_lines("r1", "(HTTP 502)")), FakeHost("web4", fail=True)]
    lb = [FakeHost("lb1", lambda text: ["nginx: active",
                                        "    server 10.0.0.1:80 max_fails=1 fail_timeout=10s;  # web1",
                                        "    server 10.0.0.3:80 max_fails=1 fail_timeout=10s down;  # web3"])]
    lines = overview.status(Fleet(web, lb, lambda r: s))
    assert lines[0].split() == ["HOST", "ROLE", "RELEASE", "PROCESS", "HEALTH", "UPTIME", "WORKERS",
                                "LOCK", "NOTE"]
    rows = {l.split()[0]: l for l in lines[1:]}
    assert rows["web1"].split()[:5] == ["web1", "web", "r2", "running", "200"]
    assert "drift: not on r2" in rows["web3"] and "502" in rows["web3"]
    assert "drift" not in rows["web1"] and "unreachable: web4: cannot connect" in rows["web4"]
    assert "2 web host(s) listed, drained: web3" in rows["lb1"]


def test_merged_logs_prefix_whole_lines_and_never_mix_hosts(capsys):
    a, b = overview.Prefixed("web1", 5), overview.Prefixed("lb1", 5)
    a.write("first li")
    b.write("other\n")
    a.write("ne\nsecond\n")
    a.write("tail")
    a.flush()
    assert capsys.readouterr().out.splitlines() == [
        "[lb1]   other", "[web1]  first line", "[web1]  second", "[web1]  tail"]


def test_env_difference_names_missing_hosts_and_differing_values():
    same = {"web1": {"A": ("server", "h1")}, "web2": {"A": ("server", "h1")}}
    assert _difference("A", same) == ""
    found = {"web1": {"A": ("server", "h1")}, "web2": {"A": ("server", "h2")},
             "web3": {"A": ("server", "h1")}, "web4": None}
    assert _difference("A", found) == "missing on web4; values differ: web1, web3 | web2"


MEMBERS = [Member("web1", "10.0.0.1"), Member("web2", "10.0.0.2"), Member("web3", "10.0.0.3")]


def lb_with(names):
    """A balancer whose config lists `names`; it keeps what the rotation writes."""
    state = {"conf": balancer.render(balancer_settings(), [m for m in MEMBERS if m.name in names])}

    def answer(text):
        return state["conf"].splitlines()

    host = FakeHost("lb1", answer)
    host.state = state
    return host


def balancer_settings():
    from deploy import settings

    return settings.build({})


def rotation_for(listed):
    s = balancer_settings()
    lb = lb_with(listed)
    web = [FakeHost(m.name) for m in MEMBERS]
    return balance.Rotation(Fleet(web, [lb], lambda r: s, MEMBERS)), web, lb


def confs(lb):
    """The server lines of every config the rotation sent, as 'name' or 'name down'."""
    import base64
    import re

    out = []
    for text in lb.ran[1:]:
        data = re.search(r"printf %s '?([A-Za-z0-9+/=]+)'? \| base64 -d", text)[1]
        conf = base64.b64decode(data).decode()
        out.append(sorted(m["name"] + (" down" if " down;" in line else "")
                          for line in conf.splitlines() if (m := balancer.SERVER_LINE.match(line))))
    return out


def test_rotation_drains_each_batch_and_puts_it_back():
    rot, web, lb = rotation_for(["web1", "web2", "web3"])
    for host in web:
        rot.drain([host])
        rot.undrain([host])
    assert confs(lb) == [["web1 down", "web2", "web3"], ["web1", "web2", "web3"],
                         ["web1", "web2 down", "web3"], ["web1", "web2", "web3"],
                         ["web1", "web2", "web3 down"], ["web1", "web2", "web3"]]


def test_rotation_never_drains_every_host_and_adds_new_hosts_after_their_switch():
    rot, web, lb = rotation_for(["web1", "web2"])   # web3 just added: not in the balancer yet
    rot.drain(web)                                  # switch_batch 0: all at once, no drain
    rot.undrain(web)
    assert confs(lb) == [["web1", "web2", "web3"]]


def test_rotation_leaves_a_balancer_alone_that_already_lists_every_host():
    rot, web, lb = rotation_for(["web1", "web2", "web3"])
    rot.drain(web)                                  # switch_batch 0: no drain
    rot.undrain(web)                                # nobody new: no round trip, no nginx reload
    rot.restore()
    assert confs(lb) == [] and len(lb.ran) == 1     # only the read


def test_rotation_restore_puts_back_what_the_balancer_listed_before():
    rot, web, lb = rotation_for(["web1", "web2"])
    rot.drain([web[0]])
    rot.restore()
    assert confs(lb) == [["web1 down", "web2"], ["web1", "web2"]]
    untouched, _, lb2 = rotation_for(["web1"])
    untouched.restore()                              # nothing changed: nothing written
    assert confs(lb2) == []


def test_lb_setup_lists_the_web_hosts_that_serve_a_release_even_those_h_left_out():
    s = balancer_settings()
    lb = lb_with(["web2", "web3"])
    fresh = FakeHost("web1", lambda text: [""])            # in the run, set up, no release yet
    other = FakeHost("web2", lambda text: ["r1"])          # -H left it out: asked anyway
    gone = FakeHost("web3", fail=True)                     # left out and not answering: kept
    fleet = Fleet([fresh], [lb], lambda r: s, MEMBERS, [other, gone])
    assert [m.name for m in balance.serving_members(fleet)] == ["web2", "web3"]
