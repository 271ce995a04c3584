"""The example app's own gunicorn settings: only what is particular to it.

The kit's production defaults (workers, timeouts, logs to stdout, no preload) come from the
config it ships in every release (deploy/kit/gunicorn_conf.py); this file is read after them and
wins where it sets something.
"""

# Import the framework in the master, once: workers forked on a reload (HUP) then only import
# the app's own modules and are ready in milliseconds instead of re-importing Flask, which keeps
# latency flat during a deploy. Libraries change only with requirements, and a requirements
# change makes the kit restart the master (new venv) instead of reloading it.
import flask  # noqa: F401,E402
