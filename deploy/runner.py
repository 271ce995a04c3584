"""The thin runner: sends scripts built elsewhere to one server over a Fabric Connection.

Scripts run as root: directly when connected as root, else through `sudo -n`, or with
--prompt-for-sudo-password through `sudo -S` once a first `sudo -n true` showed sudo wants a
password and a password-only round trip showed sudo takes it (so neither a NOPASSWD rule nor
a wrong password ever makes sudo or the script read a payload line as the password).
SSH keepalives every `ssh_keepalive` seconds, with TCP_USER_TIMEOUT at 3 of them, end a
half-open connection; the socket sends at once (TCP_NODELAY, see `nodelay_transport`); `step_timeout` bounds one script. SSH and sudo failures become one-line
KitErrors naming the host and the step;
a script's marker lines (`::step`, `::error`, …; deploy/protocol.py) time its steps and
give the error a failed script reports; `::progress TEXT` lines are shown while the
script runs (long steps: apt, pip) when the caller asks for progress.
"""
from __future__ import annotations

import contextlib
import io
import socket
import sys
import threading
import time
from dataclasses import dataclass, field

import paramiko
from fabric.runners import Remote as FabricRunner
from invoke.exceptions import CommandTimedOut, ThreadException, UnexpectedExit

from deploy import protocol, settings, trust
from deploy.errors import KitError
from deploy.shell import q


class WholeStream(io.StringIO):
    """stdin for a remote command, handed over in one piece: invoke reads a stream that is not
    a terminal one byte per 10 ms (5 KB took 55 s); this one gives it all on the first read."""

    def read(self, size: int | None = -1) -> str:
        return super().read()


class EventRunner(FabricRunner):
    """Fabric's remote runner without its polling: invoke checks every 10 ms whether the
    command ended (wait) and whether stdin has more (handle_stdin), in each host's threads for
    the whole deploy — measured the largest part of fab's CPU per host. Here the end is the
    channel's exit-status event (checked every WAKE s for a dead output thread), and a
    WholeStream is sent in one piece, then stdin is closed."""

    WAKE = 0.2
    _killed = False

    def kill(self) -> None:
        self._killed = True  # step_timeout: invoke's timer thread closes the channel
        super().kill()

    def wait(self) -> None:
        while not (self.process_is_finished or self.has_dead_threads):
            self.channel.status_event.wait(self.WAKE)
        if self._killed and self._timer is not None:
            # woken by the timer's own close: invoke reports the timeout only once it has ended
            self._timer.join(self.WAKE)

    def handle_stdin(self, input_, output, echo) -> None:
        if not isinstance(input_, WholeStream):
            return super().handle_stdin(input_, output, echo)
        data = input_.read()
        if data:
            self.write_proc_stdin(data)
        self.close_proc_stdin()


PROGRESS = "::progress "


class ProgressLines(io.TextIOBase):
    """stdout sink of a running script: hands each complete `::progress TEXT` line to `show`
    as it arrives, remembers the last `::step NAME` (named if the connection drops) and
    copies everything to `echo` when the output is streamed (the whole output is still
    parsed at the end)."""

    def __init__(self, show=None, echo=None):
        self.show, self.echo, self.partial, self.step = show, echo, "", None

    def write(self, data: str) -> int:
        if self.echo is not None:
            self.echo.write(data)
            self.echo.flush()
        *lines, self.partial = (self.partial + data).split("\n")
        for line in lines:
            if line.startswith(PROGRESS) and self.show:
                self.show(line[len(PROGRESS):])
            elif line.startswith("::step ") and len(line.split(" ")) > 2:
                self.step = line.split(" ")[1]
        return len(data)


KEEPALIVE_COUNT = 3  # unanswered keepalive intervals before the connection is given up


def root_command(script: str, as_root: bool, password: bool = False) -> str:
    """The command line that runs `script` with bash as root.

    With a sudo password, sudo reads it as the first line of stdin (-S, no prompt; -k so it
    always asks, else a cached login would leave that line for the script to read).
    """
    cmd = f"bash -c {q(script)}"
    if as_root:
        return cmd
    return f"sudo -k -S -p '' -H -- {cmd}" if password else f"sudo -n -H -- {cmd}"


@dataclass
class Outcome:
    """What a script printed: plain output lines, step timings, its markers and its error."""

    ok: bool
    code: int
    lines: list[str] = field(default_factory=list)
    steps: list[tuple[str, float]] = field(default_factory=list)
    error: str | None = None
    stderr: str = ""
    markers: dict[str, list[str]] = field(default_factory=dict)

    def marker(self, name: str) -> str | None:
        """The value of the last `::name value` line, or None when there was none."""
        values = self.markers.get(name)
        return values[-1] if values else None


def parse_output(stdout: str, stderr: str, code: int, started: float) -> Outcome:
    p = protocol.parse(stdout)
    marks, steps = p.marks, []
    # Durations use the server's clock only (differences between its own marks); the last
    # step ends at the script's `::step end` mark, or when the command returned here.
    ends = marks[1:] + [("end", marks[-1][1] + max(0.0, time.time() - started
                                                   - (marks[-1][1] - marks[0][1])))] if marks else []
    for (name, ts), nxt in zip(marks, ends):
        if name != "end":
            steps.append((name, max(0.0, nxt[1] - ts)))
    return Outcome(code == 0, code, p.lines, steps, p.error, stderr, p.markers)


class Remote:
    """One host: connect with clear errors, run root scripts, upload bytes."""

    keepalive = settings.Settings.ssh_keepalive
    step_timeout = settings.Settings.step_timeout

    def __init__(self, conn, label: str | None = None, settings: settings.Settings | None = None):
        self.conn = conn
        self.label = label or conn.original_host
        self.settings = settings  # this host's, validated by the caller (else loaded here)
        self._sudo: str | None = None  # 'nopasswd' | 'password' once probed
        # set while the run's hosts connect in the background (deploy.fleet): waits for all
        # of them and raises what connecting any of them raised
        self.pending = None

    @property
    def as_root(self) -> bool:
        return self.conn.user == "root"

    def connect(self) -> None:
        if self.pending is not None:
            self.pending()
        self.open()

    def open(self) -> None:
        """Connect now (host key checked before anything is sent); one-line KitErrors."""
        host, port, user = self.conn.host, self.conn.port, self.conn.user
        if self.conn.is_connected:
            return
        s = self.settings or settings.load(self.conn.config, host=settings.host_name(self.label))
        self.keepalive, self.step_timeout = s.ssh_keepalive, s.step_timeout
        view = trust.guard(self.conn, self.label, s.host_key_policy)  # before anything is sent
        self.conn.connect_kwargs.setdefault("transport_factory", nodelay_transport)
        if self.conn.connect_timeout is None:
            # unbounded, an unreachable host (dropped packets) takes the kernel's SYN retries:
            # ~2 min for each reconnect, e.g. the undo after a connection was lost
            self.conn.connect_timeout = max(10, KEEPALIVE_COUNT * self.keepalive)
        try:
            with prompt_thread_switches():
                self.conn.open()
        except paramiko.BadHostKeyException as e:
            self.conn.client.close()
            raise trust.bad_key_error(view, e) from None
        except paramiko.AuthenticationException:
            raise KitError(f"{self.label}: SSH refused the key for user {user}",
                           "pass the right key with -i KEY or set IdentityFile in ~/.ssh/config") from None
        except socket.gaierror:
            raise KitError(f"{self.label}: cannot resolve host name {host}",
                           "check the name in -H or ~/.ssh/config") from None
        except KitError:
            self.conn.client.close()
            raise
        except (paramiko.SSHException, OSError, EOFError) as e:
            reason = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise KitError(f"{self.label}: cannot connect to {host}:{port} ({reason})",
                           "check the address and that sshd is running there") from None
        keep_alive(self.conn.client.get_transport(), self.keepalive)

    def lost(self, what: str | None, step: str | None, why: str) -> KitError:
        """The one-line error for a connection that broke (or went silent) mid-script."""
        during = (what or "a remote script") + (f", step {step}" if step else "")
        return KitError(f"{self.label}: {why} during {during}; the task stopped",
                        f"check the network to {self.conn.host}, then `fab -H {self.label} status` "
                        "shows the live release and any lock (an unfinished prepare undoes itself "
                        "on the server); run the task again")

    def _call(self, command: str, feed: str, *, what=None, stream=False, progress=None, out=None):
        """conn.run with the kit's timeouts; a dropped or silent connection → KitError."""
        sink = ProgressLines(progress, out if out is not None else sys.stdout if stream else None)
        timeout = None if stream or not self.step_timeout else self.step_timeout
        began = time.monotonic()
        try:
            result = self.conn.run(command, pty=False, hide=None if stream else "stderr",
                                   warn=True, out_stream=sink, err_stream=out,
                                   in_stream=WholeStream(feed) if feed else False,
                                   timeout=timeout)
        except UnexpectedExit as e:  # only reached if warn is overridden by config
            result = e.result
        except CommandTimedOut:
            raise self.lost(what, sink.step, f"no end after step_timeout={self.step_timeout}s") from None
        except (paramiko.SSHException, OSError, EOFError, ThreadException) as e:
            raise self.lost(what, sink.step, f"the connection was lost ({type(e).__name__})") from None
        transport = getattr(self.conn, "transport", None)
        if result.exited == -1 and timeout and time.monotonic() - began >= timeout:
            # invoke's timer closed the channel, but its thread had not ended when invoke
            # asked whether it had fired (a busy machine): no CommandTimedOut came
            raise self.lost(what, sink.step, f"no end after step_timeout={self.step_timeout}s")
        if result.exited == -1 and transport is not None and not transport.is_active():
            raise self.lost(what, sink.step, f"the connection was lost (no answer for "
                                             f"{self.keepalive * KEEPALIVE_COUNT}s)")
        return result

    def sudo_password(self, what=None) -> str | None:
        """The sudo password to send first on stdin, or None (root, or NOPASSWD sudo).

        Probed once per host: `sudo -n true` (NOPASSWD: send nothing), else the password alone
        (`sudo -k -S true`), so a wrong one is refused before any payload follows it."""
        password = None if self.as_root else self.conn.config.get("sudo", {}).get("password")
        if not password:
            return None
        if self._sudo is None:
            if self._call("sudo -n true", "", what=what).exited == 0:
                self._sudo = "nopasswd"
            else:
                check = self._call("sudo -k -S -p '' true", f"{password}\n", what=what)
                self._check_sudo(check)
                if check.exited != 0:
                    raise KitError(f"{self.label}: user {self.conn.user} cannot use sudo "
                                   f"(exit {check.exited})", "connect as root or as a user with sudo rights")
                self._sudo = "password"
        return password if self._sudo == "password" else None

    def run(self, script: str, *, stream: bool = False, stdin: str | None = None,
            progress=None, out=None, what: str | None = None) -> Outcome:
        """Run a bash script as root; never raises for a non-zero exit (see Outcome).
        `progress(text)` is called with each `::progress` line as the script prints it;
        `out`: a file-like object that gets the output as it arrives (stream=True)."""
        self.connect()
        started = time.time()
        password = self.sudo_password(what)
        feed = (f"{password}\n" if password else "") + (stdin or "")
        result = self._call(root_command(script, self.as_root, bool(password)), feed,
                            what=what, stream=stream, progress=progress, out=out)
        self._check_sudo(result)
        return parse_output(result.stdout, result.stderr, result.exited, started)

    def must(self, script: str, what: str, **kw) -> Outcome:
        """Run a script and turn failure into a KitError naming `what` failed and why."""
        out = self.run(script, what=what, **kw)
        if not out.ok:
            raise self.failure(out, what)
        return out

    def failure(self, out: Outcome, what: str) -> KitError:
        """The one-line error for a failed script: its own `::error PROBLEM — FIX` when it
        gave one, else its last line and a pointer to the output above."""
        problem, sep, fix = self.reason(out).partition(" — ")
        return KitError(f"{self.label}: {what} failed: {problem}",
                        fix if sep else "read the lines above; fix and run again")

    @staticmethod
    def reason(out: Outcome) -> str:
        if out.error:
            return out.error
        tail = [l for l in (out.stderr.splitlines() + out.lines) if l.strip()]
        return f"exit {out.code}: {tail[-1].strip() if tail else 'no output'}"

    def _check_sudo(self, result) -> None:
        err = result.stderr or ""
        if result.exited != 0 and "incorrect password attempt" in err:
            raise KitError(f"{self.label}: sudo rejected the password for user {self.conn.user}",
                           "run again with --prompt-for-sudo-password and the right password")
        if result.exited != 0 and err.startswith("sudo:"):
            if "password" in err:
                raise KitError(f"{self.label}: user {self.conn.user} cannot sudo without a password",
                               "allow NOPASSWD sudo for it or run fab with --prompt-for-sudo-password")
            raise KitError(f"{self.label}: user {self.conn.user} cannot use sudo ({err.strip()})",
                           "connect as root or as a user with sudo rights")


_switching = {"threads": 0, "interval": 0.0}
_switching_lock = threading.Lock()
SWITCH_INTERVAL = 0.0005


@contextlib.contextmanager
def prompt_thread_switches():
    """While a host connects, a thread asking for the GIL gets it within 0.5 ms instead of
    Python's 5. Hosts connect in threads while the task's own thread works (imports and
    templates in setup, packing in deploy): the connecting thread needs the GIL briefly at each
    packet of the handshake and waited up to 5 ms for it every time (measured beside a busy
    thread, on a loaded 2-core machine: connect 143 → 105 ms; 72 ms beside an idle one)."""
    with _switching_lock:
        if _switching["threads"] == 0:
            _switching["interval"] = sys.getswitchinterval()
            sys.setswitchinterval(min(SWITCH_INTERVAL, _switching["interval"]))
        _switching["threads"] += 1
    try:
        yield
    finally:
        with _switching_lock:
            _switching["threads"] -= 1
            if _switching["threads"] == 0:
                sys.setswitchinterval(_switching["interval"])


def nodelay_transport(sock, **kwargs) -> paramiko.Transport:
    """paramiko's Transport on a socket with Nagle's algorithm off, as OpenSSH's client does.

    SSH sends many small packets and waits for the answer (key exchange, authentication,
    opening a channel, a command's exit): with Nagle on, each such exchange could wait for
    the server's delayed ACK, ~40 ms on Linux (measured: 45 ms per channel open, 0.5 ms without)."""
    if isinstance(sock, socket.socket) and sock.family in (socket.AF_INET, socket.AF_INET6):
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass
    return paramiko.Transport(sock, **kwargs)


def keep_alive(transport, interval: int) -> None:
    """SSH keepalives every `interval` s, and the kernel gives the TCP connection up when data
    (a keepalive included) stays unacknowledged for KEEPALIVE_COUNT intervals: like OpenSSH's
    ServerAliveInterval/ServerAliveCountMax, a half-open connection ends instead of hanging."""
    if transport is None:
        return
    transport.set_keepalive(interval)
    sock = transport.sock
    if isinstance(sock, socket.socket) and sock.family in (socket.AF_INET, socket.AF_INET6) \
            and hasattr(socket, "TCP_USER_TIMEOUT"):
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT,
                            interval * KEEPALIVE_COUNT * 1000)
        except OSError:
            pass
