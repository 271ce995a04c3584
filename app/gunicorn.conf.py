"""gunicorn settings for the example app, in the spirit of gunicorn's example_config.py.

The process manager (systemd or supervisor) passes what is host-specific on the command line
(socket, control socket, chdir); what is here is the app's own production default.
"""
import multiprocessing
import os

# Import the framework in the master, once: workers forked on a reload (HUP) then only import
# the app's own modules and are ready in milliseconds instead of re-importing Flask, which keeps
# latency flat during a deploy. Libraries change only with requirements, and a requirements
# change makes the kit restart the master (new venv) instead of reloading it.
import flask  # noqa: F401,E402

# Where to listen when nothing else is given. Under systemd the socket comes from
# `<app>.socket` (LISTEN_FDS) and this is ignored; under supervisor the unit passes --bind.
bind = os.environ.get("GUNICORN_BIND", "127.0.0.1:8000")

# Workers: gunicorn's rule of thumb (2 x cores + 1), overridable per host.
workers = int(os.environ.get("GUNICORN_WORKERS", multiprocessing.cpu_count() * 2 + 1))

# Time a worker may take on one request before it is killed and replaced.
timeout = 30

# On reload/stop, workers get this long to finish the requests they are serving.
graceful_timeout = 20

# Keep-alive with nginx in front: nginx reuses upstream connections only if asked to.
keepalive = 5

# Access log to stdout: the process manager's log (journald or supervisor) collects it.
accesslog = "-"
errorlog = "-"
access_log_format = '%(h)s "%(r)s" %(s)s %(b)s %(L)ss'

# Never preload: a reload (HUP) must re-import the app so new code is served.
preload_app = False
