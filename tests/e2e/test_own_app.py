"""A user's own app, deployed with the kit as a user installs it (issue #10).

The kit is installed with a plain `pip install` of a copy of this checkout into a fresh venv
(not editable, run from elsewhere); `flasksample init` runs in a git repository holding a copy
of examples/shop (app factory in a package, pyproject.toml + uv.lock, no health endpoint, no
gunicorn.conf.py, SQLite in Flask's instance folder, a worker). Everything after that is the
`flasksample` program against real sandbox hosts.
"""
import json
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from conftest import REPO_ROOT, load_on, wait_for

SHOP = REPO_ROOT / "examples" / "shop"


def git(repo: Path, *args: str) -> str:
    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t", "PATH": "/usr/bin:/bin"}
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True,
                          text=True, env=env).stdout.strip()


@pytest.fixture(scope="session")
def flasksample_bin(tmp_path_factory) -> Path:
    """`flasksample` from a plain pip install of a copy of this checkout, in a fresh venv."""
    root = tmp_path_factory.mktemp("kit-install")
    src = root / "kit"
    files = subprocess.run(["git", "-C", str(REPO_ROOT), "ls-files", "-co", "--exclude-standard"],
                           check=True, capture_output=True, text=True).stdout.split("\n")
    for name in filter(None, files):
        if (REPO_ROOT / name).is_file():
            (src / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO_ROOT / name, src / name)
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    out = subprocess.run([str(venv / "bin" / "pip"), "install", "-q", str(src)], cwd=root,
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    shutil.rmtree(src)  # the installed kit must not need its source any more
    site = subprocess.run([str(venv / "bin" / "python"), "-c", "import deploy; print(deploy.__file__)"],
                          cwd=root, capture_output=True, text=True, check=True).stdout
    assert str(venv) in site
    return venv / "bin" / "flasksample"


class Shop:
    """A git repository with a copy of examples/shop, initialised with `flasksample init`."""

    def __init__(self, root: Path, program: Path, host):
        self.dir, self.program, self.host = root / "shop", program, host
        shutil.copytree(SHOP, self.dir, ignore=shutil.ignore_patterns("__pycache__", "instance"))
        git(self.dir, "init", "-q")
        out = self.run("init")
        assert "wrote" in out.stdout and (self.dir / "fabric.yaml").is_file(), out.stdout + out.stderr
        self.commit("the shop, as flasksample init left it")

    def run(self, *args: str, check: bool = False, timeout: float = 300):
        cmd = [str(self.program)]
        if args[0] != "init":
            cmd += ["-S", self.host.ssh_config, "-H", self.host.name]
        out = subprocess.run(cmd + list(args), cwd=self.dir, capture_output=True, text=True,
                             timeout=timeout)
        if check:
            assert out.returncode == 0, f"flasksample {' '.join(args)}:\n{out.stdout}\n{out.stderr}"
        return out

    def configure(self, **values) -> None:
        path = self.dir / "fabric.yaml"
        data = yaml.safe_load(path.read_text())
        data["flasksample"].update(values)
        path.write_text(yaml.safe_dump(data))
        self.commit(f"configure {', '.join(values)}")

    def edit(self, path: str, old: str, new: str) -> None:
        f = self.dir / path
        text = f.read_text()
        assert old in text, old
        f.write_text(text.replace(old, new, 1))
        self.commit(f"edit {path}")

    def commit(self, message: str) -> None:
        git(self.dir, "add", "-A")
        git(self.dir, "commit", "-qm", message)


def in_terminal(shop, *args: str, after: bytes, typed: bytes, timeout: float = 120) -> tuple[bytes, int]:
    """Run flasksample on a local terminal (a pty); once it showed `after`, type `typed` (typed
    ahead, it would be flushed when the program sets up the terminal); (what it showed, exit code)."""
    import os
    import pty
    import select

    cmd = [str(shop.program), "-S", shop.host.ssh_config, "-H", shop.host.name, *args]
    pid, fd = pty.fork()
    if pid == 0:  # the child: becomes flasksample
        os.chdir(shop.dir)
        os.execv(cmd[0], cmd)
    shown, deadline, pending = b"", time.monotonic() + timeout, typed
    while time.monotonic() < deadline:
        if pending and after in shown:
            os.write(fd, pending)
            pending = b""
        if select.select([fd], [], [], 0.5)[0]:
            try:
                data = os.read(fd, 1024)
            except OSError:
                break
            if not data:
                break
            shown += data
    else:
        os.kill(pid, 9)
    _, status = os.waitpid(pid, 0)
    return shown, os.waitstatus_to_exitcode(status)


def get(host, path="/", data=None):
    req = urllib.request.Request(f"http://{host.address}{path}", data=data)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read().decode(), r.headers.get("X-Flasksample-Release")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(), e.headers.get("X-Flasksample-Release")


def orders_done(host):
    orders = json.loads(get(host, "/orders")[1])
    return orders if orders and all(o["status"] == "done" for o in orders) else None


SETTINGS = {"shared_dirs": ["instance"], "release_command": "flask --app shop init-db",
            "processes": {"worker": "flask --app shop worker"}}


@pytest.mark.parametrize("manager", ["systemd", "supervisor"])
def test_install_init_setup_deploy_change_rollback_exec_worker(manager, flasksample_bin, sandbox_host,
                                                               tmp_path):
    host = sandbox_host
    shop = Shop(tmp_path, flasksample_bin, host)
    shop.configure(process_manager=manager, **SETTINGS)

    shop.run("setup", check=True)
    first = shop.run("deploy", check=True)
    assert "--- release_command: flask --app shop init-db" in first.stdout
    assert "database ready: /srv/shop/current/instance/shop.sqlite" in first.stdout or \
        "database ready:" in first.stdout
    status, body, r1 = get(host)
    assert status == 200 and "Welcome to the shop" in body and r1
    assert get(host, "/static/shop.css")[1].startswith("body {")  # nginx, from shop/static
    assert get(host, "/orders", data=b"item=tea")[0] == 201
    assert wait_for("the worker", lambda: orders_done(host), 30, 0.2)[0]["item"] == "tea"  # the worker did it
    assert json.loads(get(host, "/worker")[1])["release"] == r1

    shop.edit("shop/__init__.py", 'GREETING = "Welcome to the shop"', 'GREETING = "Welcome back"')
    with load_on(host) as load:
        time.sleep(0.5)
        shop.run("deploy", check=True)
        time.sleep(0.5)
    assert load.summary()["sent"] > 20
    assert load.failures == [], load.failures[:5]
    status, body, r2 = get(host)
    assert "Welcome back" in body and r2 != r1
    assert wait_for("the worker on the new release", lambda: json.loads(get(host, "/worker")[1]).get("release") == r2, 30, 0.2)  # restarted
    assert get(host, "/orders", data=b"item=cake")[0] == 201
    assert [o["item"] for o in wait_for("the worker", lambda: orders_done(host), 30, 0.2)] == ["tea", "cake"]  # data kept

    shop.run("rollback", check=True)
    status, body, release = get(host)
    assert "Welcome to the shop" in body and release == r1
    assert wait_for("the worker on the old release", lambda: json.loads(get(host, "/worker")[1]).get("release") == r1, 30, 0.2)
    assert [o["item"] for o in json.loads(get(host, "/orders")[1])] == ["tea", "cake"]

    out = shop.run("exec", "flask --app shop init-db && echo from $VIRTUAL_ENV as $(id -un)")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "database ready" in out.stdout and "from /srv/shop/current/.venv as shop" in out.stdout
    assert shop.run("exec", "echo to stderr >&2; exit 3").returncode == 3
    shown, code = in_terminal(shop, "exec", "-i", "tty; read x; echo got-$x; exit 7",
                              after=b"/dev/pts/", typed=b"tea\r")
    assert b"/dev/pts/" in shown and b"got-tea" in shown and code == 7, shown

    status_out = shop.run("status", check=True).stdout
    assert "worker=" in status_out and ("worker=active" in status_out or "worker=RUNNING" in status_out)
    logs = shop.run("logs", "--process", "worker", "-n", "50", check=True).stdout
    assert "worker" in logs and "started" in logs


def test_failing_release_command_broken_worker_and_500_switch_nothing(flasksample_bin, sandbox_host,
                                                                       tmp_path):
    host = sandbox_host
    shop = Shop(tmp_path, flasksample_bin, host)
    shop.configure(**SETTINGS)
    shop.run("setup", "deploy", check=True)
    live = get(host)[2]

    shop.configure(release_command="echo migration 42 failed >&2; exit 3")
    out = shop.run("deploy")
    assert out.returncode != 0 and "migration 42 failed" in out.stdout + out.stderr
    assert "release_command failed" in out.stderr
    assert get(host)[2] == live

    shop.configure(release_command="flask --app shop init-db")
    shop.edit("shop/db.py", '    stop = []\n', '    raise SystemExit("worker cannot start")\n    stop = []\n')
    out = shop.run("deploy")
    assert out.returncode != 0 and "rolled back to" in out.stdout, out.stdout + out.stderr
    assert get(host)[2] == live
    assert wait_for("the worker on the live release", lambda: json.loads(get(host, "/worker")[1]).get("release") == live, 30, 0.2)
    git(shop.dir, "revert", "--no-edit", "HEAD")

    shop.edit("shop/__init__.py", "        orders = db.get()", "        1 / 0\n        orders = db.get()")
    out = shop.run("deploy")
    assert out.returncode != 0 and "nothing was switched" in out.stderr, out.stdout + out.stderr
    assert get(host)[:1] == (200,) and get(host)[2] == live
