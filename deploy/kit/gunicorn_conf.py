"""gunicorn settings the kit ships in every release (.flasksample/gunicorn.conf.py).

The kit's production defaults come first; the app's own gunicorn.conf.py, when its release has
one, is read after them and wins. The process manager passes what is host-specific on the
command line (socket, control socket, chdir, workers when set).

post_worker_init adds the header `X-Flasksample-Release: <release id>` to every response, read
from the REVISION file the kit writes into the release: the deploy's health gate uses it to
prove, through nginx, that the new release is the one answering, without any help from the app.
"""
import gc
import multiprocessing
import os
import runpy
import types

RELEASE_HEADER = "X-Flasksample-Release"

# Where to listen when nothing else is given. Under systemd the socket comes from the socket
# unit (LISTEN_FDS) and this is ignored; under supervisor the program passes --bind.
bind = "127.0.0.1:8000"
# gunicorn's rule of thumb (2 x cores + 1); the `workers:` setting overrides it per host.
workers = multiprocessing.cpu_count() * 2 + 1
# A request may take this long before its worker is replaced.
timeout = 30
# On reload/stop, workers get this long to finish the requests they are serving.
graceful_timeout = 20
# nginx in front reuses upstream connections only if asked to.
keepalive = 5
# Logs to stdout/stderr: journald or supervisor collects them.
accesslog = "-"
errorlog = "-"
access_log_format = '%(h)s "%(r)s" %(s)s %(b)s %(L)ss'
# Never preload: a reload (HUP) must import the app again so new code is served.
preload_app = False
# But import the framework (not the app) in the master, once: workers forked on a reload then
# only import the app's own modules and are ready at once. Libraries change only with the
# requirements, and then the kit restarts the master (new venv) instead of reloading it.
try:
    import flask  # noqa: F401
except ImportError:
    pass
# werkzeug binds the URL map to the request's host name IDNA-encoded, and Python imports that
# codec (with stringprep) on first use: each new worker's first request did, ~10 ms of imports
# that under load made it the slowest request of a deploy (60-300 ms measured).
import encodings.idna  # noqa: E402,F401

_release_dir = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_app_conf = os.path.join(_release_dir, "gunicorn.conf.py")
if os.path.isfile(_app_conf):
    for _name, _value in runpy.run_path(_app_conf).items():
        if not _name.startswith("_") and not isinstance(_value, types.ModuleType):
            globals()[_name] = _value

_app_post_worker_init = globals().get("post_worker_init")
_app_pre_fork = globals().get("pre_fork")
_first_fork = [True]  # this file runs again in the master on every reload (HUP)


def _read_release(directory):
    try:
        with open(os.path.join(directory, "REVISION")) as f:
            return f.read().strip() or "unknown"
    except OSError:
        return "unknown"


def _with_release(app, release):
    header = (RELEASE_HEADER, release)

    def application(environ, start_response):
        def start(status, headers, exc_info=None):
            return start_response(status, list(headers) + [header], exc_info)

        return app(environ, start)

    return application


def post_worker_init(worker):
    # cfg.chdir names the release (`current` under the process manager) this worker imported.
    worker.wsgi = _with_release(worker.wsgi, _read_release(worker.cfg.chdir or os.getcwd()))
    if _app_post_worker_init is not None and _app_post_worker_init is not post_worker_init:
        _app_post_worker_init(worker)


def pre_fork(server, worker):
    if _app_pre_fork is not None and _app_pre_fork is not pre_fork:
        _app_pre_fork(server, worker)
    # A worker shares the master's memory pages until it writes to them, and a Python process
    # writes to every object it frees or scans: a worker's garbage collections and its exit
    # (every reload retires every worker) copied all of them — measured ~75 ms CPU per worker
    # exit, ~25 ms with the master's objects frozen (gc.freeze, as Python's docs advise before a
    # fork). Once per reload the master first collects what the reload let go, so it never
    # keeps garbage frozen.
    if _first_fork:
        _first_fork.clear()
        gc.unfreeze()
        gc.collect()
    gc.freeze()


# The kit's hand-over hooks (a new master beside the old one), run before any of the above.
_handover = runpy.run_path(os.path.join(os.path.dirname(os.path.abspath(__file__)), "handover.py"))
for _hook in _handover["HOOKS"]:
    globals()[_hook] = _handover["chained"](_hook, globals().get(_hook))

# The kit's preflight zygote (zygote.py): forked by the master as it starts, first of all
# on_starting hooks, so nothing an app's hook loads is in it. (Read only then: a preflight and
# a reload read this file too.)
_kit_on_starting = globals().get("on_starting")


def on_starting(server):
    runpy.run_path(os.path.join(os.path.dirname(os.path.abspath(__file__)), "zygote.py"))["start"](server)
    if callable(_kit_on_starting):
        _kit_on_starting(server)
