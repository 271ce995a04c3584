"""gunicorn hooks for the kit's hand-over (shipped in every release as .flasksample/handover.py,
loaded by the kit's gunicorn.conf.py): a new master beside the old one, on the same listening
socket, so a new venv or a new environment goes live with no moment in which nobody accepts.

The hand-over (the process manager's `handover` in the kit's remote programs):
  kill -USR2 <master>  gunicorn forks and execs a new master that inherits the socket;
  pre_exec             makes that exec use the venv `current` points to now and the env file
                       as it is now (gunicorn alone re-uses the old python and environment),
                       and puts systemd's sockets at the fds LISTEN_FDS promises (gunicorn
                       keeps them under other numbers);
  post_worker_init     when every worker of such a new master has imported the app, tells
                       systemd the new master is the service's main process (MAINPID=,
                       needs NotifyAccess=all);
  the kit              then stops the old master (TERM: its workers finish what they serve).
If the new master cannot boot, it exits; the old one never stopped serving.
"""
import mmap
import os
import re

_NAME = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)=")
_shared = {}


def env_file(cfg):
    """/srv/<app>/shared/env, from --chdir /srv/<app>/current (deploy/layout.py)."""
    return os.path.join(os.path.dirname(os.path.normpath(cfg.chdir)), "shared", "env")


def env_names(path):
    """The names the env file sets (its values are read by sh, as supervisor's program does)."""
    try:
        with open(path) as f:
            return {m.group(1) for m in map(_NAME.match, f) if m}
    except OSError:
        return set()


def on_starting(server):
    server.kit_env_names = env_names(env_file(server.cfg))


def when_ready(server):
    # One byte per worker, in memory the workers forked from now on share with each other.
    _shared["ready"] = mmap.mmap(-1, 4096)


def pre_exec(server):
    cfg = server.cfg
    python = os.path.realpath(os.path.join(cfg.chdir, ".venv")) + "/bin/python"
    cfg.env_orig = {k: v for k, v in cfg.env_orig.items()
                    if k not in getattr(server, "kit_env_names", set())}
    args = server.START_CTX["args"][1:]  # [gunicorn script, options…] without the old python
    program = 'set -a; [ -r "$0" ] && . "$0"; set +a; exec "$@"'
    server.START_CTX[0] = "/bin/sh"
    server.START_CTX["args"] = ["/bin/sh", "-c", program, env_file(cfg), python] + args
    if server.systemd:
        held = [os.dup(listener.fileno()) for listener in server.LISTENERS]
        for i, fd in enumerate(held):
            os.dup2(fd, 3 + i)


def post_worker_init(worker):
    ready = _shared.get("ready")
    if ready is None or not os.environ.get("GUNICORN_PID"):  # not a USR2 child's first workers
        return
    ready[worker.age % len(ready)] = 1
    if sum(1 for b in ready if b) >= worker.cfg.workers:
        from gunicorn import systemd
        systemd.sd_notify(f"MAINPID={worker.ppid}\nREADY=1", worker.log)


HOOKS = ("on_starting", "when_ready", "pre_exec", "post_worker_init")


def chained(name, other):
    """The kit's hook `name`, then `other` (the config's own one, if any)."""
    mine = globals()[name]

    def hook(arg):  # gunicorn checks each hook's arity: exactly one argument
        mine(arg)
        if callable(other):
            other(arg)
    return hook
