"""deploy.fleet: every way of naming the hosts of a run gives one group, handled by one call."""
import pytest
from fabric import Config, Connection
from invoke import Context

from deploy import fleet
from deploy.errors import KitError
from deploy.fleet import HostRef, parse_host, targets

SSH_CONFIG = """\
Host w1
  HostName 10.0.0.1
  User deploy
Host w2
  HostName 10.0.0.2
"""


@pytest.fixture
def run(monkeypatch, tmp_path):
    """`run(cli, servers=…, user=…)` → the Fleet the first call of a task gets (not connected),
    and how many of Fabric's further per-host calls returned None."""
    ssh_config = tmp_path / "ssh_config"
    ssh_config.write_text(SSH_CONFIG)
    monkeypatch.setattr(fleet, "_skips", {})

    def go(cli, servers=None, user=None, task="deploy", roles=("web", "lb")):
        overrides = {"flasksample": {"servers": servers or {}}}
        if user:
            overrides["user"] = user
        config = Config(overrides=overrides, runtime_ssh_path=str(ssh_config))
        config.load_ssh_config()
        monkeypatch.setattr(fleet, "cli_hosts", lambda: cli)
        # Fabric calls the task once per -H entry (with a Connection), or once with a Context
        calls = [Connection(h, config=config) for h in cli] or [Context(config=config)]
        results = [fleet.resolve(c, task, roles, connect=False) for c in calls]
        first, rest = results[0], results[1:]
        assert all(r is None for r in rest)
        return first

    return go


def who(f):
    return [(r.label, r.conn.user, r.conn.host, r.conn.port) for r in f.hosts]


def test_parse_host_forms():
    assert parse_host("deploy@web1.example.org:2222") == HostRef("deploy@web1.example.org:2222",
                                                               "web1.example.org", "deploy", 2222)
    assert parse_host("10.0.0.1") == HostRef("10.0.0.1", "10.0.0.1")
    for bad in ("", "a b", "x@", "@h", "h:port", "h;rm", "-oProxyCommand=x", "web1:99999"):
        with pytest.raises(KitError):
            parse_host(bad)


def test_user_at_host_in_h_is_one_group(run):
    f = run(["deploy@a", "deploy@b", "deploy@c"])
    assert who(f) == [("a", "deploy", "a", 22), ("b", "deploy", "b", 22), ("c", "deploy", "c", 22)]


def test_h_with_configured_user_is_one_group(run):
    f = run(["a", "b"], user="deploy")
    assert who(f) == [("a", "deploy", "a", 22), ("b", "deploy", "b", 22)]


def test_ssh_config_aliases_are_one_group(run):
    f = run(["w1", "root@w2"])
    assert who(f) == [("w1", "deploy", "10.0.0.1", 22), ("w2", "root", "10.0.0.2", 22)]


def test_servers_with_and_without_users_are_one_group(run):
    f = run([], servers={"web": ["deploy@a", "b:2200", "w1"], "lb": ["root@lb1"]}, user="ops")
    assert who(f) == [("a", "deploy", "a", 22), ("b", "ops", "b", 2200),
                      ("w1", "deploy", "10.0.0.1", 22), ("lb1", "root", "lb1", 22)]
    assert [r.label for r in f.web] == ["a", "b", "w1"] and [r.label for r in f.lb] == ["lb1"]
    # the load balancer reaches each web host at its real address (ssh_config HostName)
    assert [(m.name, m.address) for m in f.members] == [("a", "a"), ("b", "b"), ("w1", "10.0.0.1")]


def test_h_overrides_servers_and_knows_the_lb_by_name(run):
    f = run(["deploy@b", "lb1"], servers={"web": ["a", "b"], "lb": ["lb1"]})
    assert [r.label for r in f.web] == ["b"] and [r.label for r in f.lb] == ["lb1"]
    # the balancer's upstream still lists every web host of servers:
    assert [m.name for m in f.members] == ["a", "b"]


def test_roles_pick_the_hosts_a_task_works_on(run):
    f = run([], servers={"web": ["a"], "lb": ["lb1"]}, roles=("web",))
    assert [r.label for r in f.hosts] == ["a"]


def test_one_call_per_task_does_the_work(run):
    assert run(["deploy@a", "deploy@b"], task="setup") is not None
    # a second task in the same fab run (fab -H … setup deploy) gets its own first call
    assert run(["deploy@a", "deploy@b"], task="deploy") is not None


def test_a_host_named_twice_counts_once_and_two_users_is_an_error():
    assert [r.name for r in targets({}, ["a", "a", "deploy@a"]).web] == ["a"]
    with pytest.raises(KitError) as exc:
        targets({}, ["deploy@a", "root@a"])
    assert "named twice" in str(exc.value)


def test_no_hosts_at_all_says_how_to_name_them(run):
    with pytest.raises(KitError) as exc:
        run([])
    assert "fab -H HOST" in str(exc.value) and "servers:" in str(exc.value)


def test_bad_servers_setting_is_one_line_error(make):
    with pytest.raises(KitError) as exc:
        make(servers={"db": ["a"]})
    assert "unknown role 'db'" in str(exc.value)
    with pytest.raises(KitError) as exc:
        make(servers={"web": ["a;reboot"]})
    assert "not a host" in str(exc.value)
    assert make(servers={"web": "a, deploy@b"}).servers == {"web": ["a", "deploy@b"]}


def test_each_is_bounded_and_reports_every_failed_host(monkeypatch):
    import threading
    import time

    monkeypatch.setattr(fleet, "_limit", 2)
    running, peak, lock = [0], [0], threading.Lock()

    def fn(r):
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        time.sleep(0.05)
        with lock:
            running[0] -= 1
        if r != "ok":
            raise KitError(f"{r} broke")
        return r

    assert fleet.each(["ok"] * 5, fn) == ["ok"] * 5 and peak[0] == 2
    with pytest.raises(KitError) as exc:
        fleet.each(["ok", "x", "y"], fn)
    assert str(exc.value) == "2 hosts failed: x broke | y broke"


def test_app_name_may_not_be_the_login_user(run, monkeypatch):
    from deploy import settings

    monkeypatch.setattr(settings, "RESERVED_NAMES", frozenset())  # 'deploy' is reserved too
    real_load = settings.load
    monkeypatch.setattr(settings, "load", lambda config, host=None: settings.build(
        {"app_name": "deploy"}) if host else real_load(config))
    with pytest.raises(KitError, match="app_name 'deploy' is the account fab logs in as"):
        run(["deploy@a"])


def test_a_task_checks_its_arguments_before_resolving_any_host(monkeypatch):
    from invoke.exceptions import Exit

    from deploy.fabfile import logs

    def no_hosts(*a, **kw):
        raise AssertionError("resolved hosts before checking the arguments")

    monkeypatch.setattr(fleet, "resolve", no_hosts)
    with pytest.raises(Exit) as exc:
        logs.body(Context(), since="$(reboot)")
    assert "error: --since '$(reboot)' is not a time" in str(exc.value.message)


def test_a_later_task_of_the_run_reuses_the_connection_an_earlier_one_opened(run, monkeypatch):
    """`fab setup deploy`: deploy takes setup's open connection to each host (no second login);
    one that is not open (never opened, or lost) is made anew."""
    setup = run(["w1", "w2"], task="setup")
    w1, w2 = (r.conn for r in setup.hosts)
    monkeypatch.setattr(type(w1), "is_connected", property(lambda conn: conn is w1))
    deploy = run(["w1", "w2"], task="deploy")
    assert deploy.hosts[0].conn is w1
    assert deploy.hosts[1].conn is not w2 and deploy.hosts[1].conn.host == "10.0.0.2"
