"""Fixtures for end-to-end tests on real sandbox hosts (systemd-nspawn, needs root).

Every test here is marked `e2e`. Without root or systemd-nspawn they are skipped — unless
CI=true or FLASKSAMPLE_REQUIRE_E2E=1, where missing prerequisites fail loudly instead.

    def test_x(sandbox_host, ssh):             # one fresh host
        assert ssh(sandbox_host).run("hostname", hide=True).stdout.strip() == sandbox_host.name

    def test_y(sandbox_hosts):                 # several, started in parallel
        a, b = sandbox_hosts(2)
        c, = sandbox_hosts(1, release="trixie")  # Debian 13 (default: the test's release)

    @pytest.mark.both_releases                 # runs once per Debian release: [bookworm], [trixie]
    def test_z(sandbox_host): ...

Hosts get names `t<pid>x<k>`, so a user's own sandboxes (fs1…) are never touched, and are
always removed at test end; a session-level net removes any this session left behind.
"""
import atexit
import itertools
import os
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from fabric import Config, Connection

from deploy.errors import KitError
from deploy.sandbox import down, image, list_hosts, manager, up

E2E_DIR = Path(__file__).resolve().parent
REPO_ROOT = E2E_DIR.parent.parent


def e2e_required() -> bool:
    return os.environ.get("CI") == "true" or os.environ.get("FLASKSAMPLE_REQUIRE_E2E") == "1"


def missing_prerequisites() -> str | None:
    """Why sandbox hosts cannot run here, or None."""
    if not sys.platform.startswith("linux"):
        return f"sandbox hosts need Linux, this is {sys.platform}"
    if os.geteuid() != 0:
        return "sandbox hosts need root (run the e2e tests with sudo)"
    missing = manager.missing_tools()
    if missing:
        return f"missing {', '.join(missing)}: {manager.INSTALL_HINT}"
    return None


def pytest_collection_modifyitems(config, items):
    reason = missing_prerequisites()
    for item in items:
        if E2E_DIR not in Path(str(item.fspath)).resolve().parents:
            continue  # this hook sees the whole session's items
        item.add_marker(pytest.mark.e2e)
        if reason and not e2e_required():
            item.add_marker(pytest.mark.skip(reason=f"e2e: {reason}"))


# -- the release matrix: which Debian release a test's hosts run ---------------------------------

def pytest_configure(config):
    config.addinivalue_line("markers", "both_releases: run this e2e test once per sandbox release "
                                       "(Debian 12 bookworm and Debian 13 trixie)")


def pytest_generate_tests(metafunc):
    if metafunc.definition.get_closest_marker("both_releases") and \
            "sandbox_release" in metafunc.fixturenames:
        metafunc.parametrize("sandbox_release", list(image.RELEASES))


@pytest.fixture
def sandbox_release():
    """The Debian release of the test's hosts: bookworm (Debian 12), unless the test is marked
    `both_releases`, which runs it once per release. CI time decides which tests get both."""
    return image.DEFAULT_RELEASE


@pytest.fixture(autouse=True)
def _e2e_prerequisites():
    """With CI=true / FLASKSAMPLE_REQUIRE_E2E=1, a machine that cannot run sandboxes is a failure."""
    reason = missing_prerequisites()
    if reason:
        pytest.fail(f"e2e prerequisites missing and e2e required (CI/FLASKSAMPLE_REQUIRE_E2E): "
                    f"{reason}", pytrace=False)


class _Registry:
    """Names of hosts this pytest process created, for unique naming and the safety net."""

    def __init__(self):
        self.prefix = f"t{os.getpid()}x"
        self._counter = itertools.count(1)
        self._lock = threading.Lock()
        self.names: set[str] = set()

    def new_name(self) -> str:
        with self._lock:
            name = f"{self.prefix}{next(self._counter)}"
            self.names.add(name)
            return name

    def remove(self, names) -> None:
        """Remove those of `names` that still exist (in parallel); ignore the rest."""
        existing = {h.name for h in list_hosts()}
        todo = [n for n in names if n in existing]
        errors = []
        if todo:
            with ThreadPoolExecutor(max_workers=len(todo)) as pool:
                for err in pool.map(_down_quietly, todo):
                    if err:
                        errors.append(err)
        with self._lock:
            self.names -= set(names)
        if errors:
            raise RuntimeError("; ".join(errors))


def _down_quietly(name: str) -> str | None:
    try:
        down(name)
    except KitError as e:
        if "no sandbox host named" not in str(e):
            return str(e)
    return None


_registry = _Registry()


@atexit.register
def _remove_leftovers_at_exit():
    if _registry.names and missing_prerequisites() is None:
        _registry.remove(list(_registry.names))


@pytest.fixture(scope="session")
def sandbox_registry():
    """The session's host names; whatever is still up at session end is removed."""
    yield _registry
    _registry.remove(list(_registry.names))


@pytest.fixture(scope="session")
def sandbox_image(sandbox_registry):
    """Build (or reuse the cached) base image once per session; returns the unpacked root."""
    manager.check_machine()
    return image.ensure_rootfs(lambda msg: print(msg, file=sys.stderr))


@pytest.fixture
def sandbox_hosts(sandbox_image, sandbox_registry, sandbox_release):
    """Factory: `sandbox_hosts(n, release=None)` starts n fresh hosts in parallel and returns
    them (release None: the test's `sandbox_release`). All are removed at test end, pass or fail."""
    mine: list[str] = []

    def start(count: int = 1, release: str | None = None):
        release = release or sandbox_release
        image.ensure_rootfs(lambda msg: print(msg, file=sys.stderr), release)  # built once, cached
        names = [sandbox_registry.new_name() for _ in range(count)]
        mine.extend(names)
        with ThreadPoolExecutor(max_workers=count) as pool:
            futures = [pool.submit(up, n, release=release) for n in names]
        errors = [f.exception() for f in futures if f.exception()]
        if errors:
            raise errors[0]
        return [f.result() for f in futures]

    yield start
    sandbox_registry.remove(mine)


@pytest.fixture
def sandbox_host(sandbox_hosts):
    """One fresh sandbox host."""
    return sandbox_hosts(1)[0]


@pytest.fixture
def ssh():
    """`ssh(host, user="deploy")` → a Fabric Connection to the host (stdin not forwarded), closed
    at test end."""
    opened = []

    def connect(host, user: str | None = None) -> Connection:
        # in_stream=False: pytest's captured stdin cannot be read by remote commands
        conn = Connection(host.address, user=user or host.user, connect_timeout=10,
                          config=Config(overrides={"run": {"in_stream": False}}),
                          connect_kwargs={"key_filename": host.key_path,
                                          "look_for_keys": False, "allow_agent": False})
        opened.append(conn)
        return conn

    yield connect
    for conn in opened:
        conn.close()


@pytest.fixture
def fab():
    """`fab("sandbox.up", "--name", "x")` → CompletedProcess of the real CLI, run from the repo."""
    import subprocess

    def run(*args: str, timeout: float = 300):
        return subprocess.run([sys.executable, "-m", "fabric", *args], cwd=REPO_ROOT,
                              capture_output=True, text=True, timeout=timeout)

    return run


# -- the kit on sandbox hosts -------------------------------------------------------------------

APP_DIR = REPO_ROOT / "app"


# the tests ask /healthz from this machine (the sandboxes' network), not from the host itself
SANDBOX_NETWORK = "10.231.0.0/16"


class AppCopy:
    """A copy of app/ outside git (packed as a directory) plus a fabric.yaml pointing at it."""

    def __init__(self, root: Path, **settings):
        import shutil

        self.dir = root / "app"
        shutil.copytree(APP_DIR, self.dir, ignore=shutil.ignore_patterns("__pycache__"))
        self.config = root / "fabric.yaml"
        self.settings(**settings)

    def settings(self, **values) -> None:
        import yaml

        # The bundled app has a health endpoint: the tests use it (an app without one: examples/shop).
        self.config.write_text(yaml.safe_dump({"flasksample": {
            "app_dir": str(self.dir), "health_path": "/healthz",
            "health_allow": [SANDBOX_NETWORK], **values}}))

    def say(self, text: str) -> None:
        """Make `/` answer `text` instead of Hello World!."""
        serve = self.dir / "serve.py"
        serve.write_text(serve.read_text().replace('return "Hello World!"', f"return {text!r}")
                         .replace(f"return {self._said!r}", f"return {text!r}"))
        self._said = text

    _said = "Hello World!"

    def patch(self, old: str, new: str) -> None:
        serve = self.dir / "serve.py"
        source = serve.read_text()
        assert old in source, old
        serve.write_text(source.replace(old, new, 1))


@pytest.fixture
def app_copy(tmp_path):
    return AppCopy(tmp_path)


@pytest.fixture
def kit(fab):
    """`kit(host, "setup", "deploy", user="root", config=path)` runs the real `fab` against a
    sandbox host and asserts success unless check=False."""

    def run(host, *tasks, user=None, config=None, check=True, timeout=300):
        target = f"{user}@{host.name}" if user else host.name
        args = ["-S", host.ssh_config, "-H", target]
        if config:
            args = ["-f", str(config), *args]
        result = fab(*args, *tasks, timeout=timeout)
        if check:
            assert result.returncode == 0, f"fab {' '.join(tasks)} failed:\n{result.stdout}\n{result.stderr}"
        return result

    return run


def http_get(host, path="/", timeout=5.0) -> tuple[int, str]:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://{host.address}{path}", timeout=timeout) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


@pytest.fixture
def http():
    return http_get


def load_on(host, https=None, **kw):
    """Steady load through the host's nginx, with the tests' defaults: four clients keep the
    app busy without starving a 2-core machine that also runs another test, and a request
    counts as failed after 10 s (a restart on a loaded CI machine can queue requests for
    seconds: latency, which bench/ measures, not a dropped request).
    https=(NAME, CA_FILE): like `curl --cacert CA_FILE --resolve NAME:443:ADDRESS https://NAME/`
    (a certificate that does not verify is a failed request)."""
    from bench.load import Load

    kw = {"concurrency": 4, "timeout": 10.0, "max_seconds": 120, **kw}
    if not https:
        return Load(f"http://{host.address}/", **kw)
    import http.client
    import socket
    import ssl

    name, ca_file = https
    context = ssl.create_default_context(cafile=str(ca_file))

    class Resolved(http.client.HTTPSConnection):
        def connect(self):
            sock = socket.create_connection((host.address, 443), self.timeout)
            self.sock = context.wrap_socket(sock, server_hostname=name)

    class HttpsLoad(Load):
        def connection(self):
            return Resolved(name, 443, timeout=self.timeout, context=context)

    return HttpsLoad(f"https://{name}/", **kw)


def wait_for(what: str, probe, timeout: float = 60.0, every: float = 0.05):
    """Poll `probe()` until it returns something truthy; AssertionError naming `what` otherwise."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out waiting for {what}")
