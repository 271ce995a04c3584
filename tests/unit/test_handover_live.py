"""The kit's gunicorn hooks (deploy/kit/handover.py) with a real gunicorn: on a reload (HUP) the
old workers keep serving, and on a hand-over (USR2) the old master is told to go (MAINPID=), only
once every new worker has imported the app."""
import http.client
import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from test_keeper import wait_for

KIT = Path(__file__).resolve().parents[2] / "deploy" / "kit"

# The app: with the file `hold` present, the first worker to import it goes on, the others wait
# until the file `go` exists — new workers that have not imported the app yet, for as long as the
# test wants. It answers with its pid and its master's.
APP = """
import os, time
if os.path.exists("hold"):
    try:
        os.close(os.open("first", os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        while not os.path.exists("go"):
            time.sleep(0.02)
def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [f"{os.getpid()} {os.getppid()}".encode()]
"""


class UnixHTTP(http.client.HTTPConnection):
    def __init__(self, path):
        super().__init__("localhost", timeout=10)
        self.path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.path)


def answer(sock):
    conn = UnixHTTP(str(sock))
    try:
        conn.request("GET", "/")
        pid, master = conn.getresponse().read().split()
        return int(pid), int(master)
    finally:
        conn.close()


def children(pid):
    found = set()
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                stat = (p / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if stat[1] == str(pid) and stat[0] != "Z":
                found.add(int(p.name))
    return found


@pytest.fixture
def notify(tmp_path):
    """A notify socket, as systemd (or the keeper) offers gunicorn."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(str(tmp_path / "notify.sock"))
    yield s
    s.close()


@pytest.fixture
def gunicorn(tmp_path, notify):
    pytest.importorskip("gunicorn")
    root = tmp_path / "app"  # the kit's layout: root/current -> releases/r1
    release = root / "releases" / "r1"
    (release / ".flasksample").mkdir(parents=True)
    (root / "current").symlink_to("releases/r1")
    for name in ("handover.py", "keeper.py", "zygote.py"):
        shutil.copy(KIT / name, release / ".flasksample" / name)
    shutil.copy(KIT / "gunicorn_conf.py", release / ".flasksample" / "gunicorn.conf.py")
    (release / "holdapp.py").write_text(APP)
    (release / ".venv").symlink_to(sys.prefix)  # the hand-over's new master runs current/.venv
    sock = tmp_path / "app.sock"
    env = {k: v for k, v in os.environ.items() if k not in ("LISTEN_FDS", "LISTEN_PID")}
    env["NOTIFY_SOCKET"] = notify.getsockname()
    master = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", str(root / "current" / ".flasksample" / "gunicorn.conf.py"),
         "--chdir", str(root / "current"), "--bind", f"unix:{sock}", "--workers", "2",
         "--access-logfile", "/dev/null", "holdapp:app"], cwd=root, env=env, stdout=open(tmp_path / "log", "w"), stderr=subprocess.STDOUT)
    try:
        wait_for(sock.exists, timeout=30)
        wait_for(lambda: len(children(master.pid)) == 2, timeout=30)
        yield master, release, sock
    finally:
        master.terminate()
        try:
            master.wait(20)
        except subprocess.TimeoutExpired:
            master.kill()


def test_reload_keeps_the_old_workers_until_every_new_one_has_imported_the_app(gunicorn):
    master, release, sock = gunicorn
    old = children(master.pid)
    (release / "hold").write_text("")
    master.send_signal(signal.SIGHUP)
    new = wait_for(lambda: (children(master.pid) - old) if len(children(master.pid) - old) == 2 else None, 30)
    wait_for((release / "first").exists, timeout=30)
    # one new worker is still importing the app: the old ones stay and answer (plain gunicorn
    # TERMs them at once)
    for _ in range(6):
        assert answer(sock)[0] in old | new
    assert children(master.pid) == old | new
    (release / "go").write_text("")
    wait_for(lambda: children(master.pid) == new, timeout=30)  # retired once the new ones are ready
    assert answer(sock)[0] in new


def messages(notify):
    got = []
    notify.setblocking(False)
    try:
        while True:
            got.append(notify.recv(4096).decode())
    except BlockingIOError:
        return got
    finally:
        notify.setblocking(True)


def test_handover_names_the_new_master_once_every_new_worker_has_imported_the_app(gunicorn, notify):
    master, release, sock = gunicorn
    messages(notify)  # the first master's READY=1
    (release / "hold").write_text("")
    master.send_signal(signal.SIGUSR2)
    # the new master's first worker serves; its second is still importing the app
    pid, new_master = wait_for(lambda: next((a for a in [answer(sock)] if a[1] != master.pid), None), 30)
    assert not [m for m in messages(notify) if "MAINPID=" in m]
    (release / "go").write_text("")
    notify.settimeout(60)
    while True:
        message = notify.recv(4096).decode()
        if "MAINPID=" in message:
            break
    assert f"MAINPID={new_master}" in message.splitlines()
    try:
        master.terminate()  # what the manager then does
        master.wait(30)
        # code-only deploys later: current moves on, the release the first master started in
        # is pruned (neither current nor previous), the new master reloads — and keeps serving
        root = release.parent.parent
        for name in ("r2", "r3"):
            shutil.copytree(release, root / "releases" / name, symlinks=True)
            (root / "next").symlink_to(f"releases/{name}")
            os.replace(root / "next", root / "current")
            if name == "r3":
                shutil.rmtree(release)
            before = children(new_master)
            os.kill(new_master, signal.SIGHUP)
            after = wait_for(lambda: (children(new_master) if len(children(new_master)) == 2
                                      and not children(new_master) & before else None), 30)
            assert answer(sock) in {(pid, new_master) for pid in after}
    finally:
        os.kill(new_master, signal.SIGTERM)


def test_worker_exit_names_the_worker_retired(tmp_path):
    """What lib.sh's gunicorn_retired reads: a worker past its last answer, before it is gone."""
    code = (f"import runpy; h = runpy.run_path({str(KIT / 'handover.py')!r}); h['worker_exit'](None, None); "
            "print(open('/proc/self/comm').read().strip(), h['RETIRED'])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["kit-retired", "kit-retired"]


LEAVE = """
import atexit, os, runpy, sys, threading, types
h = runpy.run_path({handover!r})
worker = types.SimpleNamespace(pid=os.getpid(), booted=True)
atexit.register(print, "atexit ran", flush=True)
class Teardown:
    def __del__(self):
        print("teardown ran", flush=True)
kept = Teardown()
if {thread!r}:
    threading.Thread(target=lambda: __import__("time").sleep(0.3)).start()
try:
    sys.exit({code!r})
finally:
    h["chained"]("worker_exit", lambda server, w: print("app hook ran", flush=True))(None, worker)
"""


@pytest.mark.parametrize("code,thread,quick", [(0, False, True), (3, False, False), (0, True, False)])
def test_a_worker_that_ended_normally_leaves_without_pythons_teardown(code, thread, quick):
    """After the app's worker_exit and the atexit functions, a worker that ended normally exits
    at once (no teardown: no copy of the pages it shares with the master); a worker with another
    exit status, or a thread Python would wait for, exits as gunicorn and Python decide."""
    src = LEAVE.format(handover=str(KIT / "handover.py"), code=code, thread=thread)
    out = subprocess.run([sys.executable, "-c", src], capture_output=True, text=True, timeout=30)
    assert out.returncode == code
    lines = out.stdout.splitlines()
    assert lines[:2] == ["app hook ran", "atexit ran"]
    assert ("teardown ran" in lines) is not quick
