"""supervisor's keeper (deploy/kit/keeper.py), run for real with stand-in gunicorn masters."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

KEEPER = Path(__file__).resolve().parents[2] / "deploy" / "kit" / "keeper.py"

# A stand-in master: on USR2 it starts a new master (its child, as gunicorn does) that tells the
# keeper it is ready (MAINPID=, like handover.py); TERM ends it with status 7.
MASTER = r"""
import os, signal, socket, sys, time
def ready(pid):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.sendto(f"READY=1\nMAINPID={pid}".encode(), os.environ["NOTIFY_SOCKET"])
def usr2(*_):
    if os.fork() == 0:
        time.sleep(0.2)
        ready(os.getpid())
        main()
def main():
    signal.signal(signal.SIGUSR2, usr2)
    signal.signal(signal.SIGTERM, lambda *_: os._exit(7))
    open(os.environ["STANDIN_UP"] + str(os.getpid()), "w").close()
    socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM).sendto(b"READY=1", os.environ["NOTIFY_SOCKET"])
    while True:
        time.sleep(0.05)
main()
"""


def wait_for(check, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("condition not reached")


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is not alive
    return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"


def test_keeper_follows_a_handed_over_master_and_stops_with_it(tmp_path):
    pidfile = tmp_path / "gunicorn.pid"
    keeper = subprocess.Popen([sys.executable, str(KEEPER), str(pidfile), sys.executable, "-c", MASTER],
                              env={**os.environ, "STANDIN_UP": str(tmp_path / "up.")})
    try:
        first = int(wait_for(lambda: pidfile.exists() and pidfile.read_text().strip()))
        wait_for((tmp_path / f"up.{first}").exists)  # its signal handlers are in place
        assert first != keeper.pid and alive(first)
        os.kill(first, signal.SIGUSR2)  # what the kit's hand-over does
        second = int(wait_for(lambda: pidfile.read_text().strip() != str(first) and pidfile.read_text().strip()))
        wait_for(lambda: not alive(first))  # the keeper retired the old master
        assert alive(second) and keeper.poll() is None  # supervisord's process stays
        # the new master is now the keeper's child (child subreaper)
        wait_for(lambda: Path(f"/proc/{second}/stat").read_text().split()[3] == str(keeper.pid))
        wait_for((tmp_path / f"up.{second}").exists)
        keeper.send_signal(signal.SIGTERM)  # signals go on to the current master: it ends, so does the keeper
        assert keeper.wait(10) == 7
        assert not pidfile.exists() and not (tmp_path / "notify.sock").exists()
    finally:
        if keeper.poll() is None:
            keeper.kill()


def test_keeper_notify_socket_is_the_app_users_alone(tmp_path):
    pidfile = tmp_path / "gunicorn.pid"
    keeper = subprocess.Popen([sys.executable, str(KEEPER), str(pidfile), sys.executable, "-c", MASTER],
                              env={**os.environ, "STANDIN_UP": str(tmp_path / "up.")})
    try:
        wait_for(pidfile.exists)
        assert oct((tmp_path / "notify.sock").stat().st_mode & 0o777) == "0o600"
    finally:
        keeper.terminate()
        keeper.wait(10)
