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

A reload (HUP: a code-only deploy, `systemctl reload`, `supervisorctl signal HUP`): gunicorn
forks the new workers and TERMs the old ones at once; on_reload keeps the old ones serving until
every new worker has imported the app (then they finish what they serve and exit). The last new
worker to be ready TERMs them itself: the master only looks every 0.1 s while it reloads.
worker_exit names a worker that has answered its last request `RETIRED` (/proc/PID/comm), so the
kit's reload (lib.sh `retire_children`) need not wait for the exit of a Python process, which
takes a while of its own, to know no old worker answers any more. After the app's own
worker_exit, a worker that ended normally leaves without Python's teardown (leave_quickly).
"""
import atexit
import functools
import mmap
import os
import re
import signal
import sys
import threading
import time
import types

_NAME = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)=")
# State that outlives this file: a reload (HUP) reads the config, and so this file, again, and
# the hooks in force after it must find what the ones before put here.
_shared = sys.modules.setdefault("flasksample_handover", types.ModuleType("flasksample_handover")).__dict__


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
    # One byte per worker (by age), in memory the workers forked from now on share with the
    # master and each other.
    _shared["ready"] = mmap.mmap(-1, 4096)
    for name in ("reap_workers", "manage_workers"):
        method = getattr(server, name, None)
        if callable(method):
            setattr(server, name, _after_releasing(server, method))


def _slot(age):
    return age % 4096


def on_reload(server):
    """HUP: gunicorn forks the new workers, then at once TERMs the old ones, which leaves only
    workers still importing the app to accept for a moment. Keep the old ones serving
    (num_workers held at old + new) until every new worker has imported the app."""
    ready, workers = _shared.get("ready"), getattr(server, "WORKERS", None)
    if ready is None or not isinstance(workers, dict) or not hasattr(server, "worker_age"):
        return  # not a gunicorn this knows: its own reload
    want = server.cfg.workers
    for age in range(server.worker_age + 1, server.worker_age + 1 + 4 * want):
        ready[_slot(age)] = 0
    # "hold" keeps its shape across kit versions: a running master's wrappers (when_ready) call
    # the _release of the handover.py it started with, which reads it.
    _shared["hold"] = (server.worker_age, want, time.monotonic() + (server.cfg.timeout or 30))
    _shared["old_workers"] = tuple(workers)
    server.num_workers = len(workers) + want


def _release(server):
    """Once every new worker is ready (or the worker timeout passed): back to cfg.workers and
    TERM the old workers (their requests finish; the new ones accept meanwhile)."""
    hold = _shared.get("hold")
    if hold is None:
        return
    last_old, want, deadline = hold
    ready = _shared["ready"]
    new = [w for w in server.WORKERS.values() if w.age > last_old]
    if sum(1 for w in new if ready[_slot(w.age)]) < want and time.monotonic() < deadline:
        return
    del _shared["hold"]
    server.num_workers = want
    for pid, worker in list(server.WORKERS.items()):
        if worker.age <= last_old:
            server.kill_worker(pid, signal.SIGTERM)


def _after_releasing(server, method):
    def wrapped(*args, **kwargs):
        result = method(*args, **kwargs)
        _release(server)
        return result
    return wrapped


def pre_exec(server):
    cfg = server.cfg
    python = os.path.realpath(os.path.join(cfg.chdir, ".venv")) + "/bin/python"
    cfg.env_orig = {k: v for k, v in cfg.env_orig.items()
                    if k not in getattr(server, "kit_env_names", set())}
    args = server.START_CTX["args"][1:]  # [gunicorn script, options…] without the old python
    program = 'set -a; [ -r "$0" ] && . "$0"; set +a; exec "$@"'
    server.START_CTX[0] = "/bin/sh"
    # gunicorn starts the new master in the directory it was itself started in, by then resolved
    # to releases/<x>; the new master takes that as the default of --chdir, which every reload
    # checks: once releases/<x> is pruned, a reload would stop the master. The app's root stays.
    server.START_CTX["cwd"] = os.path.dirname(os.path.normpath(cfg.chdir))
    server.START_CTX["args"] = ["/bin/sh", "-c", program, env_file(cfg), python] + args
    if server.systemd:
        held = [os.dup(listener.fileno()) for listener in server.LISTENERS]
        for i, fd in enumerate(held):
            os.dup2(fd, 3 + i)
            # when os.dup gave 3 + i itself (free once the first workers' files are closed),
            # dup2 changes nothing and the fd stays close-on-exec: the new master found fd 3
            # closed (EBADF) and every hand-over after a reload failed
            os.set_inheritable(3 + i, True)


def _retire_old(worker, ready):
    """In a reload's new worker (it inherited the hold): when every new worker is ready, TERM
    the old ones now, those still the master's children (the master's own _release follows)."""
    hold = _shared.get("hold")
    if hold is None:
        return
    last_old, want, _ = hold
    if sum(ready[_slot(age)] for age in range(last_old + 1, last_old + 1 + 4 * want)) < want:
        return
    for pid in _shared.get("old_workers", ()):
        try:
            with open(f"/proc/{pid}/stat") as f:
                parent = int(f.read().rsplit(")", 1)[1].split()[1])
            if parent == worker.ppid:
                os.kill(pid, signal.SIGTERM)
        except (OSError, ValueError, IndexError):
            pass


RETIRED = "kit-retired"  # lib.sh `retire_children` reads it (a comm is at most 15 bytes)


def worker_exit(server, worker):
    """The worker left its loop: it has answered its last request (gunicorn calls this as the
    worker process ends, before Python tears itself down)."""
    try:
        with open("/proc/self/comm", "w") as f:
            f.write(RETIRED)
    except OSError:
        pass


def leave_quickly(worker):
    """A worker that ended normally (SystemExit 0, only its main thread left) runs the atexit
    functions and flushes its output, then exits at once. Python's own teardown frees every
    object, writing to pages the worker shares with the master, so each of them is copied: with
    every reload retiring every worker, that was most of the host's CPU for a code-only deploy
    on a busy host, and it delays no answer of anyone. Anything else exits as gunicorn decides."""
    if worker is None or getattr(worker, "pid", None) != os.getpid() or not worker.booted:
        return  # the master calls worker_exit too, for a worker it found gone
    done = sys.exc_info()[1]
    if not isinstance(done, SystemExit) or done.code not in (0, None):
        return
    if any(t.is_alive() and not t.daemon for t in threading.enumerate() if t is not threading.main_thread()):
        return  # Python would wait for them
    atexit._run_exitfuncs()  # logging's flush among them
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(0)


def post_worker_init(worker):
    ready = _shared.get("ready")
    if ready is None:
        return
    ready[_slot(worker.age)] = 1
    _retire_old(worker, ready)
    # wake the master (a SIGCHLD makes it reap, which finds nothing): a reload's old workers
    # retire as soon as the last new one is ready, not at the master's next 1 s tick
    os.kill(worker.ppid, signal.SIGCHLD)
    if not os.environ.get("GUNICORN_PID"):  # not a USR2 child's first workers
        return
    if ready[:].count(1) >= worker.cfg.workers:  # (iterating an mmap yields bytes, never 0)
        from gunicorn import systemd
        systemd.sd_notify(f"MAINPID={worker.ppid}\nREADY=1", worker.log)


HOOKS = ("on_starting", "when_ready", "on_reload", "pre_exec", "post_worker_init", "worker_exit")
LAST = {"worker_exit": lambda server, worker: leave_quickly(worker)}  # after the config's own hook


def chained(name, other):
    """The kit's hook `name`, then `other` (the config's own one, if any)."""
    mine = globals()[name]

    @functools.wraps(mine)  # gunicorn checks each hook's arity: the signature is mine's
    def hook(*args):
        mine(*args)
        if callable(other):
            other(*args)
        if name in LAST:
            LAST[name](*args)
    return hook
