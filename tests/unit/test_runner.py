"""deploy/host.py (root_command, parse_output, Remote with a fake connection) and
deploy/deployer.py (batches, rollback through a Remote whose 'server' is local bash)."""
from __future__ import annotations

import os
import subprocess
import time
from types import SimpleNamespace

import pytest

from deploy.tasks import deploy as deployer
from deploy.errors import KitError
from deploy.runner import EventRunner, Outcome, ProgressLines, Remote, parse_output, root_command
from deploy.shell import q


# -- root_command ----------------------------------------------------------------------------

def test_root_command_as_root_runs_bash_directly():
    assert root_command("echo 'hi'\n", as_root=True) == "bash -c " + q("echo 'hi'\n")


def test_root_command_as_a_user_goes_through_non_interactive_sudo():
    assert root_command("id -u", as_root=False) == "sudo -n -H -- bash -c 'id -u'"


def test_root_command_round_trips_any_script(run_bash):
    text = "set -e\nx='a \"b\" $c'\necho \"$x\" `echo tick`\n"
    assert run_bash(root_command(text, as_root=True)).stdout == 'a "b" $c tick\n'


# -- parse_output ----------------------------------------------------------------------------

def test_parse_output_splits_steps_errors_and_lines():
    out = parse_output("::step lock 100.0\nhello\n::step unpack 101.5\n::error boom happened\nbye\n",
                       "warn\n", 1, started=time.time())
    assert (out.ok, out.code, out.error, out.stderr) == (False, 1, "boom happened", "warn\n")
    assert out.lines == ["hello", "bye"]
    assert [name for name, _ in out.steps] == ["lock", "unpack"]
    assert out.steps[0] == ("lock", 1.5)
    assert out.steps[1][1] >= 0.0


def test_parse_output_last_error_wins_and_other_markers_are_named_values():
    out = parse_output("::error first\n::error second\n::previous r1\n::prepared\n", "", 0, started=0.0)
    assert out.ok and out.error == "second" and out.lines == [] and out.steps == []
    assert out.marker("previous") == "r1" and out.marker("prepared") == "" and out.marker("x") is None


def test_a_malformed_marker_is_a_plain_line_never_an_exception():
    """X3: app output such as `::step boot now` no longer raises (it was a traceback)."""
    out = parse_output("::step boot now\n::step\n:: x\n::Weird thing\n", "", 0, started=0.0)
    assert out.lines == ["::step boot now", "::step", ":: x", "::Weird thing"] and out.steps == []


def test_parse_output_of_a_real_script_run(run_bash):
    from deploy.shell import fail, script, step
    result = run_bash(script(step("one"), "echo work", step("two"), fail("it broke", "mend it", 3)))
    out = parse_output(result.stdout, result.stderr, result.returncode, started=time.time())
    assert (out.ok, out.code, out.error, out.lines) == (False, 3, "it broke — mend it", ["work"])
    assert [n for n, _ in out.steps] == ["one", "two"]
    assert all(0.0 <= t < 5 for _, t in out.steps)


def test_step_times_do_not_depend_on_the_servers_clock():
    started = time.time()
    skewed = started - 3600  # the server's clock is an hour behind
    out = parse_output(f"::step a {skewed}\n::step b {skewed + 1}\n", "", 0, started=started)
    assert all(t <= time.time() - started + 1.0 for _, t in out.steps), out.steps


def test_progress_lines_are_shown_as_they_arrive_and_left_out_of_the_output():
    shown = []
    sink = ProgressLines(shown.append)
    sink.write("::progress apt: Get:1 ngi")
    assert shown == []  # only complete lines
    sink.write("nx\nplain\n::step x 1.0\n::progress apt: Setting up nginx\n")
    assert shown == ["apt: Get:1 nginx", "apt: Setting up nginx"]
    out = parse_output("::progress a\nplain\n", "", 0, started=0.0)
    assert out.lines == ["plain"]


# -- Remote with a fake Fabric connection ----------------------------------------------------

class FakeConn:
    """Just enough of fabric.Connection; `handler(cmd)` returns (stdout, stderr, exited)."""

    def __init__(self, user="root", handler=None, sudo_password=None):
        self.user, self.host, self.port, self.original_host = user, "web1", 22, "web1"
        self.is_connected = True  # connect() then skips the SSH handshake and host-key check
        self.config = {"sudo": {"password": sudo_password}}
        self.commands: list[str] = []
        self.handler = handler or (lambda cmd: ("", "", 0))

    def open(self):
        pass

    def run(self, cmd, **kw):
        self.commands.append(cmd)
        stdout, stderr, exited = self.handler(cmd)
        return SimpleNamespace(stdout=stdout, stderr=stderr, exited=exited)


def local_bash(cmd):
    r = subprocess.run(cmd, shell=True, capture_output=True, text=True, timeout=10, executable="/bin/bash")
    return r.stdout, r.stderr, r.returncode


def test_remote_runs_as_root_without_sudo():
    conn = FakeConn(user="root", handler=local_bash)
    out = Remote(conn).run("echo ok")
    assert conn.commands == ["bash -c 'echo ok'"]
    assert (out.ok, out.lines) == (True, ["ok"])


def test_remote_as_user_uses_sudo_n():
    conn = FakeConn(user="deploy")
    Remote(conn).run("echo ok")
    assert conn.commands == ["sudo -n -H -- bash -c 'echo ok'"]


def test_sudo_needing_a_password_is_a_one_line_kit_error():
    conn = FakeConn(user="deploy", handler=lambda cmd: ("", "sudo: a password is required\n", 1))
    with pytest.raises(KitError) as exc:
        Remote(conn).run("true")
    assert str(exc.value) == ("web1: user deploy cannot sudo without a password — fix: allow NOPASSWD "
                              "sudo for it or run fab with --prompt-for-sudo-password")


def test_must_names_what_failed_and_why():
    conn = FakeConn(handler=lambda cmd: ("::error disk full\n", "", 1))
    with pytest.raises(KitError, match=r"^web1: setup failed: disk full — fix: "):
        Remote(conn).must("true", "setup")
    conn = FakeConn(handler=lambda cmd: ("", "tar: oops\n", 2))
    with pytest.raises(KitError, match=r"^web1: setup failed: exit 2: tar: oops — fix: "):
        Remote(conn).must("true", "setup")


def test_reason_without_output():
    assert Remote.reason(Outcome(False, 7)) == "exit 7: no output"


# -- deployer.batches ------------------------------------------------------------------------

@pytest.mark.parametrize("items, size, expected", [
    ([1, 2, 3, 4, 5], 2, [[1, 2], [3, 4], [5]]),
    ([1, 2, 3], 0, [[1, 2, 3]]),
    ([1, 2, 3], 1, [[1], [2], [3]]),
    ([1, 2, 3], 10, [[1, 2, 3]]),
    (["a"], 0, [["a"]]),
])
def test_batches(items, size, expected):
    assert deployer.batches(items, size) == expected


# -- deployer.rollback against a local "server" ----------------------------------------------

R1, R2 = "20261126-230000.000-aaaaaaa", "20261126-231000.000-bbbbbbb"


@pytest.fixture
def local_server(tmp_path, make):
    """A Remote whose scripts run in local bash on a temp base_dir; switch scripts are recorded."""
    root = tmp_path / "srv"
    for r in (R1, R2):
        (root / "releases" / r).mkdir(parents=True)
    os.symlink(f"releases/{R2}", root / "current")
    s = make(base_dir=str(root))
    switched: list[str] = []

    def handler(cmd):
        if "# switch: point" in cmd:  # the switch itself needs systemd/nginx: record which release
            switched.append(next(r for r in (R1, R2) if f"RELEASE={r}" in cmd))
            return "::previous x\n", "", 0
        return local_bash(cmd)

    return Remote(FakeConn(handler=handler)), s, switched


def test_rollback_switches_to_the_release_before_current(local_server):
    remote, s, switched = local_server
    deployer.rollback([remote], lambda r: s)
    assert switched == [R1]


def test_rollback_with_nothing_before_current_is_a_kit_error(local_server, tmp_path):
    remote, s, switched = local_server
    os.unlink(tmp_path / "srv" / "current")
    os.symlink(f"releases/{R1}", tmp_path / "srv" / "current")
    with pytest.raises(KitError, match="there is no release before the current one to roll back to — fix: deploy one first, or name one with --to"):
        deployer.rollback([remote], lambda r: s)
    assert switched == []


def test_rollback_to_a_missing_release_is_a_kit_error(local_server):
    remote, s, switched = local_server
    missing = "20261126-232000.000-ccccccc"
    with pytest.raises(KitError, match=f"no release {missing} on this host"):
        deployer.rollback([remote], lambda r: s, to=missing)
    with pytest.raises(KitError, match="'nope' is not a release name"):
        deployer.rollback([remote], lambda r: s, to="nope")
    assert switched == []


# -- sudo with a password, stdin -------------------------------------------------------------

class StdinConn(FakeConn):
    """Also records what was fed to the command's stdin (read the way invoke reads it)."""

    def run(self, cmd, **kw):
        stream = kw.get("in_stream")
        self.fed = stream.read(1) if stream else None  # invoke asks for one byte at a time
        return super().run(cmd, **kw)


def test_root_command_with_a_sudo_password_reads_it_from_stdin():
    assert root_command("true", as_root=False, password=True) == "sudo -k -S -p '' -H -- bash -c true"


def sudo_wants_password(cmd):
    return ("", "sudo: a password is required\n", 1) if cmd == "sudo -n true" else ("", "", 0)


def test_sudo_password_goes_first_on_stdin_then_the_scripts_input_in_one_read():
    conn = StdinConn(user="deploy", sudo_password="pw", handler=sudo_wants_password)
    Remote(conn).run("cat", stdin='{"a": 1}')
    assert conn.commands == ["sudo -n true", "sudo -k -S -p '' true", "sudo -k -S -p '' -H -- bash -c cat"]
    assert conn.fed == 'pw\n{"a": 1}'
    conn.commands.clear()
    r = Remote(conn)
    r.run("true")
    r.run("true")  # sudo is probed once per host
    assert conn.commands == ["sudo -n true", "sudo -k -S -p '' true",
                             "sudo -k -S -p '' -H -- bash -c true", "sudo -k -S -p '' -H -- bash -c true"]


def test_nopasswd_sudo_never_gets_the_password_as_a_stdin_line():
    conn = StdinConn(user="deploy", sudo_password="pw")  # every sudo -n succeeds: NOPASSWD
    Remote(conn).run("cat", stdin='{"a": 1}')
    assert conn.commands == ["sudo -n true", "sudo -n -H -- bash -c cat"]
    assert conn.fed == '{"a": 1}'


def test_a_wrong_password_is_refused_before_the_payload_is_sent():
    def handler(cmd):
        if cmd.startswith("sudo -k -S"):
            return "", "Sorry, try again.\nsudo: 1 incorrect password attempt\n", 1
        return sudo_wants_password(cmd)
    conn = StdinConn(user="deploy", sudo_password="bad", handler=handler)
    with pytest.raises(KitError, match="sudo rejected the password"):
        Remote(conn).run("cat", stdin='{"secret": "s3cr3t"}')
    assert conn.commands == ["sudo -n true", "sudo -k -S -p '' true"]
    assert conn.fed == "bad\n"


def test_no_stdin_and_no_password_sends_nothing():
    conn = StdinConn(user="deploy")
    Remote(conn).run("true")
    assert conn.fed is None


def test_a_rejected_sudo_password_is_a_one_line_kit_error():
    conn = FakeConn(user="deploy", sudo_password="bad", handler=lambda cmd: (
        "", "Sorry, try again.\nsudo: 1 incorrect password attempt\n", 1))
    with pytest.raises(KitError) as exc:
        Remote(conn).run("true")
    assert str(exc.value).startswith("web1: sudo rejected the password for user deploy — fix:")


# -- R4: keepalive and step timeout, over a real SSH session ----------------------------------

def ssh_remote(tmp_path, on_exec, label="web1", **kit):
    """A Remote (as root) whose connection leads to sshpair.serve_commands(on_exec)."""
    import paramiko
    from fabric import Config, Connection

    from tests.unit import sshpair

    key = paramiko.ECDSAKey.generate()
    kh = tmp_path / "known_hosts"
    kh.write_text(f"web1 {key.get_name()} {key.get_base64()}\n")
    conn = Connection("web1", user="root", config=Config(overrides={"flasksample": kit}),
                      connect_kwargs={"sock": sshpair.serve_commands(key, on_exec),
                                      "pkey": paramiko.ECDSAKey.generate(),
                                      "look_for_keys": False, "allow_agent": False})
    conn.ssh_config = {"userknownhostsfile": str(kh), "globalknownhostsfile": "none"}
    conn.config.runners.remote = EventRunner  # as deploy.fleet.connection sets it
    return Remote(conn, label)


def test_a_connection_lost_mid_script_names_the_host_step_and_next_step(tmp_path):
    def on_exec(channel, command, transport):
        channel.recv(3)  # the client's stdin: it has the exec reply, so the command runs
        channel.sendall(b"::step venv 1.0\nbuilding\n")
        transport.close()  # the network goes away: no exit status ever comes
    r = ssh_remote(tmp_path, on_exec)
    with pytest.raises(KitError) as e:
        r.must("true", "preparing the release", stdin="go\n")
    msg = str(e.value)
    assert msg.startswith("web1: the connection was lost") and "\n" not in msg
    assert "during preparing the release, step venv" in msg and "fab -H web1 status" in msg


def test_a_script_that_never_ends_stops_at_step_timeout(tmp_path):
    def on_exec(channel, command, transport):
        channel.sendall(b"::step switch 1.0\n")  # and then nothing, as over a half-open link
    r = ssh_remote(tmp_path, on_exec, label="root@web1", hosts={"web1": {"step_timeout": 1}})
    with pytest.raises(KitError) as e:
        r.run("true", what="switching")
    # (the step line may or may not have arrived within the second: the lost-link test checks it)
    assert "root@web1: no end after step_timeout=1s during switching" in str(e.value)


def test_keepalive_and_tcp_user_timeout_are_set_on_a_tcp_connection(tmp_path):
    import paramiko
    import socket as socketmod

    from deploy.runner import keep_alive

    from tests.unit import sshpair

    listener = socketmod.create_server(("127.0.0.1", 0))
    client = socketmod.create_connection(listener.getsockname())
    server_end, _ = listener.accept()
    sshpair.serve_commands(paramiko.ECDSAKey.generate(), lambda *a: None, sock=server_end)
    t = paramiko.Transport(client)
    t.start_client(timeout=5)
    try:
        keep_alive(t, 7)
        assert t.packetizer._Packetizer__keepalive_interval == 7
        assert client.getsockopt(socketmod.IPPROTO_TCP, socketmod.TCP_USER_TIMEOUT) == 21000
    finally:
        t.close()
        listener.close()


# -- R3: a multi-host deploy interrupted or failing during the switch ---------------------------

NEW, OLD = "20261126-232000.000-ccccccc", "20261126-230000.000-aaaaaaa"


class FleetHost(Remote):
    """A host whose programs are recorded, not run: `on` maps a program to what happens."""

    def __init__(self, label, log, on=None):
        super().__init__(SimpleNamespace(original_host=label, host=label), label)
        self.log, self.on = log, on or {}

    def connect(self):
        self.log.append((self.label, "connect"))
        if isinstance(self.on.get("connect"), BaseException):
            raise self.on["connect"]

    def run(self, script, what=None, **kw):
        name = script.rsplit("# shellcheck shell=bash\n# ", 1)[-1].split(":", 1)[0]
        if name == "switch" and "\nVERB='rolled back to'\n" in script:
            name = "rollback"
        self.log.append((self.label, name))
        action = self.on.get(name)
        if isinstance(action, BaseException):
            raise action
        if action == "fail":
            return Outcome(False, 4, [], [], "it failed its gate — fix it")
        return Outcome(True, 0, markers={"previous": [OLD]})


@pytest.fixture
def fleet(monkeypatch, make):
    from deploy import package
    monkeypatch.setattr(package, "build", lambda s: package.Package(NEW, "ccccccc", b"x", "h"))
    s = make(switch_batch=1)
    return lambda *hosts: (list(hosts), lambda r: s)


@pytest.mark.parametrize("trouble", [KeyboardInterrupt(), "fail"], ids=["ctrl-c", "gate"])
def test_an_interrupted_or_failed_switch_rolls_back_the_switched_hosts_and_aborts_the_rest(fleet, trouble):
    log = []
    hosts, settings_for = fleet(FleetHost("a", log), FleetHost("b", log, {"switch": trouble}),
                                FleetHost("c", log))
    with pytest.raises(KeyboardInterrupt if trouble != "fail" else KitError):
        deployer.deploy(hosts, settings_for)
    done = [x for x in log if x[1] not in ("connect", "prepare")]
    assert done[:2] == [("a", "switch"), ("b", "switch")] and done[-1] == ("a", "rollback")
    assert sorted(done[2:-1]) == [("b", "abort"), ("c", "abort")]  # in parallel: any order


def test_an_unreachable_host_does_not_stop_the_others_rollback(fleet):
    log = []
    lost = KitError("b: the connection was lost", "check the network")
    hosts, settings_for = fleet(FleetHost("a", log), FleetHost("b", log, {"switch": lost, "abort": lost}))
    with pytest.raises(KitError, match="connection was lost"):
        deployer.deploy(hosts, settings_for)
    assert ("a", "rollback") in log and ("b", "abort") in log


def test_every_host_is_connected_before_any_is_sent_anything(fleet):
    """deploy connects the hosts itself, while it packs: one that cannot be reached stops the
    deploy before any host gets a program."""
    log = []
    down = KitError("b: cannot connect to b:22 (timed out)", "check the address")
    hosts, settings_for = fleet(FleetHost("a", log), FleetHost("b", log, {"connect": down}))
    with pytest.raises(KitError, match="cannot connect"):
        deployer.deploy(hosts, settings_for)
    assert sorted(log) == [("a", "connect"), ("b", "connect")]


def test_a_release_name_read_back_from_a_host_must_have_the_kits_shape(fleet):
    out = Outcome(True, 0, markers={"previous": ["x'; rm -rf /; echo '"]})
    assert deployer.previous_of(out) == ""
    assert deployer.previous_of(Outcome(True, 0, markers={"previous": [OLD]})) == OLD


def test_connecting_is_bounded_unless_ssh_config_bounds_it(monkeypatch):
    """A host that drops packets must not hold a (re)connect for the kernel's ~2 min of SYN
    retries (the fault suite's cut connection: the undo's reconnect took 130 s)."""
    from fabric import Config, Connection

    from deploy import runner

    seen = []

    def refuse(conn):
        seen.append(conn.connect_timeout)
        raise OSError("timed out")

    monkeypatch.setattr(runner.trust, "guard", lambda *a, **k: None)
    monkeypatch.setattr(Connection, "open", refuse)
    for given in (None, 4):  # None: 3 keepalives (default 5 s); 4: ConnectTimeout from ssh config
        conn = Connection("192.0.2.1", user="root", config=Config(), connect_timeout=given)
        with pytest.raises(KitError, match="cannot connect"):
            Remote(conn).connect()
    assert seen == [15, 4]


def test_connecting_hosts_get_the_gil_promptly_and_the_interval_comes_back(monkeypatch):
    """While hosts connect (in threads, beside a busy task thread), Python hands the GIL over
    within 0.5 ms instead of 5; once the last one is connected or failed, the old interval."""
    import sys
    import threading

    from fabric import Config, Connection

    from deploy import runner

    seen, both_in = [], threading.Barrier(2, timeout=10)

    def open_(conn):
        seen.append(sys.getswitchinterval())
        both_in.wait()  # two hosts connecting at once
        raise OSError("refused")

    monkeypatch.setattr(runner.trust, "guard", lambda *a, **k: None)
    monkeypatch.setattr(Connection, "open", open_)
    before = sys.getswitchinterval()
    errors = []

    def connect():
        try:
            Remote(Connection("192.0.2.1", user="root", config=Config())).connect()
        except KitError as e:
            errors.append(e)

    threads = [threading.Thread(target=connect) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(errors) == 2 and seen == [runner.SWITCH_INTERVAL] * 2
    assert sys.getswitchinterval() == before


def test_rollback_finds_every_hosts_target_before_switching_any(monkeypatch, make):
    """A host with nothing to roll back to stops the rollback before any host switched."""
    log = []

    class Host(FleetHost):
        def run(self, script, **kw):
            name = script.rsplit("# shellcheck shell=bash\n# ", 1)[-1].split(":", 1)[0]
            self.log.append((self.label, name))
            if name == "rollback_target":
                if self.label == "b":
                    return Outcome(False, 2, [], [], "there is no release before the current one — deploy one first")
                return Outcome(True, 0, [OLD])
            return Outcome(True, 0)

    s = make()
    with pytest.raises(KitError, match="b: finding the release to roll back to failed"):
        deployer.rollback([Host("a", log), Host("b", log)], lambda r: s)
    assert [name for _, name in log] == ["rollback_target", "rollback_target"]


# -- EventRunner -----------------------------------------------------------------------------

def test_event_runner_sends_stdin_at_once_and_waits_for_the_exit_event():
    """No 10 ms polling: stdin in one piece then closed, and wait() returns once paramiko sets
    the exit-status event (here from another thread, 0.1 s later)."""
    import threading

    from deploy.runner import WholeStream

    status = threading.Event()
    sent = []
    channel = SimpleNamespace(status_event=status, exit_status_ready=status.is_set,
                              sendall=sent.append, shutdown_write=lambda: sent.append("EOF"))
    runner = object.__new__(EventRunner)
    runner.channel, runner.threads, runner.encoding = channel, {}, "utf-8"
    runner.handle_stdin(WholeStream("x" * 50_000), None, False)
    assert sent == [b"x" * 50_000, "EOF"]
    threading.Timer(0.1, status.set).start()
    runner.wait()
    assert status.is_set()
