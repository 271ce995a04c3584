"""The preflight's zygote (deploy/kit/zygote.py) for real: a gunicorn master started with the
kit's config forks it; root's client (the same file) asks it to check releases laid out as the
kit ships them. No server is mocked: the master, the zygote and its children are processes."""
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from test_handover_live import children
from test_keeper import wait_for

from deploy import gunicorn, health

KIT = Path(__file__).resolve().parents[2] / "deploy" / "kit"
ZYGOTE = KIT / "zygote.py"

OK = ("def app(environ, start_response):\n"
      "    start_response('200 OK', [('Content-Type', 'text/plain')])\n"
      "    return [b'ok']\n")
APPS = {
    "ok": OK,
    "broken_import": "import no_such_module_anywhere\n",
    "error": "def app(environ, start_response):\n    raise RuntimeError('the app is broken')\n",
    "missing": "def app(environ, start_response):\n    start_response('404 Not Found', [])\n    return [b'no']\n",
    "hang": "import time\ntime.sleep(300)\n",
    "crash": "import os, signal\nos.kill(os.getpid(), signal.SIGSEGV)\n",
    # a module only the release the master runs has: never importable by another release
    "stale": "import only_in_the_first\n" + OK,
    # the app's environment: the env file's as the master got it, raw_env from its config,
    # nothing of the master's own wiring
    "environ": "import os\n"
               "assert os.environ['FROM_ENV_FILE'] == 'yes' and os.environ['KIT_TEST'] == 'yes'\n"
               "assert 'NOTIFY_SOCKET' not in os.environ and 'GUNICORN_PID' not in os.environ\n"
               "assert os.getcwd() == os.path.dirname(os.path.abspath(__file__))\n" + OK,
}


def lay_out(root: Path, name: str, app: str, venv: str = sys.prefix, conf: str = "") -> Path:
    rel = root / "releases" / name
    (rel / ".flasksample").mkdir(parents=True)
    shutil.copy(KIT / "gunicorn_conf.py", rel / ".flasksample" / "gunicorn.conf.py")
    for kit_file in ("handover.py", "preflight.py", "zygote.py"):
        shutil.copy(KIT / kit_file, rel / ".flasksample" / kit_file)
    (rel / "serve.py").write_text(APPS[app])
    (rel / "REVISION").write_text(name + "\n")
    (rel / ".venv").symlink_to(venv)
    if conf:
        (rel / "gunicorn.conf.py").write_text(conf)
    return rel


class Service:
    """A gunicorn master on releases/r1 as the process manager starts it (its runtime
    directory, the env file's variables in its environment)."""

    def __init__(self, tmp_path: Path):
        pytest.importorskip("gunicorn")
        self.root = tmp_path / "srv"
        (self.root / "shared").mkdir(parents=True)
        first = lay_out(self.root, "r1", "ok")
        (first / "only_in_the_first.py").write_text("")
        (self.root / "current").symlink_to("releases/r1")
        (self.root / "shared" / "env").write_text("FROM_ENV_FILE=yes\n")
        self.run_dir = Path(tempfile.mkdtemp(prefix="zy", dir="/tmp"))  # short: a socket path
        self.socket = self.run_dir / "zygote.sock"
        self.log = tmp_path / "master.log"
        self.master = self.start()

    def start(self):
        env = {k: v for k, v in os.environ.items() if k not in ("LISTEN_FDS", "LISTEN_PID", "NOTIFY_SOCKET")}
        env.update(RUNTIME_DIRECTORY=str(self.run_dir), FROM_ENV_FILE="yes")
        current = self.root / "current"
        return subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", f"{current}/.flasksample/gunicorn.conf.py",
             "--chdir", str(current), "--bind", f"unix:{self.run_dir}/app.sock", "--workers", "1",
             "--no-control-socket", "serve:app"],
            cwd=current, env=env, stdout=open(self.log, "a"), stderr=subprocess.STDOUT)

    def zygote(self) -> int:
        """The zygote's pid (the process listening on the socket's name)."""
        wait_for(self.socket.exists, timeout=30)
        found = [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()
                 and _cmdline(p).startswith(f"flasksample zygote: preflights for {self.root}/current")]
        assert len(found) >= 1, found
        return max(found)

    def stop(self, master=None):
        master = master or self.master
        master.terminate()
        try:
            master.wait(20)
        except subprocess.TimeoutExpired:
            master.kill()
        shutil.rmtree(self.run_dir, ignore_errors=True)


def _cmdline(p: Path) -> str:
    try:
        return (p / "cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
    except OSError:
        return ""


@pytest.fixture
def service(tmp_path):
    svc = Service(tmp_path)
    svc.zygote()
    yield svc
    svc.stop()


def ask(make, svc: Service, rel: Path, health_path="", timeout=20, limit=None):
    """Root's client, as prepare.sh runs it (curl): the HTTP status and the answer's body."""
    s = make(wsgi="serve:app", health_path=health_path, health_timeout=timeout)
    argv = health.preflight_argv(s, str(rel), gunicorn.argv(s, str(rel), workers=1))
    limit = limit if limit is not None else timeout + 2
    body = b"".join(a.encode() + b"\0" for a in [str(limit), *argv[1:]])
    out = subprocess.run(["curl", "-s", "-m", str(limit + 5), "-H", "Expect:", "--unix-socket",
                          str(svc.socket), "--data-binary", "@-", "-o", "-", "-w", "\n%{http_code}",
                          "http://zygote/preflight/1"], input=body, capture_output=True, timeout=60)
    text, _, code = out.stdout.decode(errors="replace").rpartition("\n")
    return int(code), text


def test_a_good_release_passes_in_a_child_of_the_zygote_no_child_of_the_master(make, service):
    rel = lay_out(service.root, "r2", "ok")
    code, out = ask(make, service, rel)
    assert code == 200, out
    assert out.count('"GET / HTTP/1.1" 200 2') == 3  # three in a row, gunicorn's access log
    zygote = service.zygote()
    assert zygote not in children(service.master.pid)  # gunicorn's reaping and the kit's counts
    assert children(zygote) == set()  # the preflight ended with its answer
    assert oct(service.socket.stat().st_mode & 0o777) == "0o600"


@pytest.mark.parametrize("app,health_path,timeout,limit,says", [
    ("broken_import", "", 20, None, "No module named 'no_such_module_anywhere'"),
    ("error", "", 1, None, "last health answer: HTTP 500"),
    ("missing", "/healthz", 1, None, "last health answer: HTTP 404"),
    ("hang", "", 1, 2, "preflight: stopped after 2 s"),
    ("crash", "", 20, None, "preflight: ended by SIGSEGV"),
    ("stale", "", 20, None, "No module named 'only_in_the_first'"),
])
def test_a_broken_release_fails_with_its_output(make, service, app, health_path, timeout, limit, says):
    rel = lay_out(service.root, "r2", app)
    code, out = ask(make, service, rel, health_path=health_path, timeout=timeout, limit=limit)
    assert code == 422, out
    assert says in out
    assert children(service.zygote()) == set()  # nothing of it is left running


def test_a_preflight_under_way_is_named_in_ps(make, service):
    import threading
    rel = lay_out(service.root, "r2", "hang")
    asking = threading.Thread(target=ask, args=(make, service, rel), kwargs={"timeout": 1, "limit": 30})
    asking.start()
    try:
        wait_for(lambda: any(_cmdline(Path(f"/proc/{p}")) == f"flasksample zygote: preflight of {rel}"
                             for p in children(service.zygote())), 20)
    finally:
        for p in children(service.zygote()):
            os.kill(p, signal.SIGKILL)
        asking.join()


def test_the_app_gets_the_services_environment_and_its_configs(make, service):
    rel = lay_out(service.root, "r2", "environ", conf="raw_env = ['KIT_TEST=yes']\n")
    code, out = ask(make, service, rel)
    assert code == 200, out


def test_another_venv_or_a_changed_env_file_needs_the_cold_preflight(make, service, tmp_path):
    other = tmp_path / "other-venv"
    other.mkdir()
    code, out = ask(make, service, lay_out(service.root, "r2", "ok", venv=str(other)))
    assert code == 503 and "venv" in out
    (service.root / "shared" / "env").write_text("FROM_ENV_FILE=no\n")
    code, out = ask(make, service, lay_out(service.root, "r3", "ok"))
    assert code == 503 and "env file changed" in out


def test_another_kits_request_needs_the_cold_preflight(service):
    out = subprocess.run(["curl", "-s", "--unix-socket", str(service.socket), "--data-binary", "x",
                          "-w", "\n%{http_code}", "http://zygote/preflight/2"], capture_output=True, text=True)
    assert out.stdout.splitlines() == ["the service's zygote speaks another protocol (another kit's)", "503"]


def test_the_zygote_survives_a_reload_and_ends_with_its_master(make, service):
    zygote = service.zygote()
    workers = children(service.master.pid)
    service.master.send_signal(signal.SIGHUP)
    wait_for(lambda: children(service.master.pid) and not children(service.master.pid) & workers, 30)
    assert service.zygote() == zygote
    assert ask(make, service, lay_out(service.root, "r2", "ok"))[0] == 200
    service.master.terminate()
    service.master.wait(20)
    wait_for(lambda: not Path(f"/proc/{zygote}").exists() and not service.socket.exists(), 10)


def test_a_stopped_zygote_leaves_no_socket_behind(service):
    zygote = service.zygote()
    os.kill(zygote, signal.SIGTERM)  # supervisor's stop signals the service's whole group
    wait_for(lambda: not Path(f"/proc/{zygote}").exists() and not service.socket.exists(), 10)


def test_a_new_master_brings_its_own_zygote(make, service):
    old = service.zygote()
    inode = service.socket.stat().st_ino
    service.master.send_signal(signal.SIGUSR2)  # gunicorn's hand-over: a new master beside
    wait_for(lambda: service.socket.stat().st_ino != inode, 30)
    new = service.zygote()
    assert new != old
    master = next(p for p in children(service.master.pid)
                  if f"GUNICORN_PID={service.master.pid}".encode() in Path(f"/proc/{p}/environ").read_bytes())
    service.master.terminate()  # what the manager then does with the old master
    service.master.wait(20)
    wait_for(lambda: not Path(f"/proc/{old}").exists(), 10)
    assert service.socket.exists()  # the old zygote left the new one's socket alone
    assert ask(make, service, lay_out(service.root, "r2", "ok"))[0] == 200
    os.kill(master, signal.SIGTERM)
    wait_for(lambda: not Path(f"/proc/{new}").exists(), 30)
