"""The preflight (deploy/kit/preflight.py), run for real on a release laid out as the kit ships
it (the kit's gunicorn.conf.py and hooks) with small WSGI apps: gunicorn loads them, nothing
listens."""
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from deploy import health, gunicorn

KIT = Path(__file__).resolve().parents[2] / "deploy" / "kit"

APPS = {
    "ok": "def app(environ, start_response):\n"
          "    start_response('200 OK', [('Content-Type', 'text/plain')])\n"
          "    return [b'x' * 300000]\n",  # larger than a socket buffer
    "error": "def app(environ, start_response):\n    raise RuntimeError('the app is broken')\n",
    "missing": "def app(environ, start_response):\n"
               "    start_response('404 Not Found', [])\n    return [b'no']\n",
    "broken_import": "import no_such_module_anywhere\n",
    # a factory call, and the environment of the env file / raw_env seen at import
    "factory": "import os\n"
               "def create():\n"
               "    assert os.environ['KIT_TEST'] == 'yes'\n"
               "    def app(environ, start_response):\n"
               "        ok = environ['PATH_INFO'] == '/up' and environ['HTTP_HOST'] == 'localhost'\n"
               "        start_response('204 No Content' if ok else '500 Bad', [])\n"
               "        return []\n"
               "    return app\n",
    # the app's own post_worker_init runs (after the kit's, which adds the release header)
    # an app tells its preflight from its service by the program's path in sys.argv
    "argv": "import sys\n"
            "def app(environ, start_response):\n"
            "    ok = any('preflight' in a for a in sys.argv)\n"
            "    start_response('200 OK' if ok else '503 Service', [])\n"
            "    return []\n",
    "hooked": "def app(environ, start_response):\n"
              "    ok = getattr(app, 'hooked', False)\n"
              "    start_response('200 OK' if ok else '503 Not Hooked', [])\n"
              "    return []\n",
}


def release(tmp_path, module: str, conf: str = "") -> Path:
    rel = tmp_path / "rel"
    (rel / ".flasksample").mkdir(parents=True)
    (rel / "serve.py").write_text(APPS[module])
    (rel / "REVISION").write_text("r1\n")
    shutil.copy(KIT / "gunicorn_conf.py", rel / ".flasksample" / "gunicorn.conf.py")
    for name in ("handover.py", "preflight.py", "zygote.py"):
        shutil.copy(KIT / name, rel / ".flasksample" / name)
    if conf:
        (rel / "gunicorn.conf.py").write_text(conf)
    return rel


def preflight(make, rel: Path, wsgi="serve:app", health_path="", timeout=20):
    s = make(wsgi=wsgi, health_path=health_path, health_timeout=timeout)
    argv = health.preflight_argv(s, str(rel), gunicorn.argv(s, str(rel), workers=1))
    argv[0] = sys.executable  # this machine's python, which has gunicorn
    return subprocess.run(argv, capture_output=True, text=True, timeout=30, cwd="/")


def test_a_release_that_answers_passes(make, tmp_path):
    out = preflight(make, release(tmp_path, "ok"))
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.count('"GET / HTTP/1.1" 200 300000') == 3  # three in a row, gunicorn's log


@pytest.mark.parametrize("module,health_path,status", [
    ("error", "", 500), ("missing", "/healthz", 404)])
def test_a_bad_answer_fails_after_the_timeout_naming_it(make, tmp_path, module, health_path, status):
    out = preflight(make, release(tmp_path, module), health_path=health_path, timeout=1)
    assert out.returncode == 1
    assert out.stderr.splitlines()[-1] == f"last health answer: HTTP {status}"


def test_without_a_health_path_a_404_on_slash_is_an_app_that_runs(make, tmp_path):
    assert preflight(make, release(tmp_path, "missing")).returncode == 0


def test_an_import_error_fails_at_once_with_the_traceback(make, tmp_path):
    out = preflight(make, release(tmp_path, "broken_import"))
    assert out.returncode != 0 and "No module named 'no_such_module_anywhere'" in out.stderr


def test_a_factory_call_and_the_configs_environment(make, tmp_path):
    rel = release(tmp_path, "factory", conf="raw_env = ['KIT_TEST=yes']\n")
    out = preflight(make, rel, wsgi="serve:create()", health_path="/up")
    assert out.returncode == 0, out.stdout + out.stderr


def test_the_apps_post_worker_init_hook_runs(make, tmp_path):
    rel = release(tmp_path, "hooked", conf="def post_worker_init(worker):\n"
                                           "    import serve\n    serve.app.hooked = True\n")
    out = preflight(make, rel)
    assert out.returncode == 0, out.stdout + out.stderr


def test_the_app_sees_the_preflight_in_its_argv(make, tmp_path):
    out = preflight(make, release(tmp_path, "argv"))
    assert out.returncode == 0, out.stdout + out.stderr
