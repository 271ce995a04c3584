"""A warm fork-server for the deploy's preflight (shipped in every release as
.flasksample/zygote.py): the running gunicorn master already has gunicorn and the framework
imported; a preflight forked from it skips python's start and those imports (most of a cold
preflight's time and CPU).

In the service: the kit's gunicorn.conf.py calls `start` from on_starting, so the master forks
it once, before any worker and before the app's own on_starting. It is forked twice over, so it
is no child of the master (gunicorn's reaping, the workers the kit counts and retires never see
it), yet it lives in the service's cgroup, as its user, with its environment and sandbox. It
listens on $RUNTIME_DIRECTORY/zygote.sock (0600, the app user's; root connects); it ends with
its master (a pidfd) and a new master (a hand-over) puts its own in its place; a reload (HUP)
keeps it. It never imports the app.

From root's prepare (deploy/remote/prepare.sh), curl asks it over that socket (HTTP: no python
to start on root's side):

    POST /preflight/1   body: LIMIT, PREFLIGHT.PY, PATH, TOP, TIMEOUT, GUNICORN-OPTIONS…, WSGI
                        (each ended by a NUL byte)

and it runs that preflight (deploy/kit/preflight.py) in a child: the release's own
preflight.py, config and app, loaded afresh (nothing of the master's release stays
importable), killed after LIMIT seconds (with whatever the app started). It runs it only when
it is what a cold preflight would check: the release uses the venv its master runs, and the env
file is as it was when that master started. The answer: 200 good, 422 bad (the body: the
preflight's output, both with the exit status), 503 no verdict (the body: why; the cold
preflight runs instead).
"""
import os
import select
import signal
import socket
import sys
import time

NAME = "zygote.sock"
PATH = b"/preflight/1"
KEEP = 256 * 1024  # of the preflight's output, its end
# The master's own wiring, no part of the environment a preflight gets.
NOT_INHERITED = ("NOTIFY_SOCKET", "LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES", "GUNICORN_FD",
                 "GUNICORN_PID", "PWD")
IGNORED = (signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2, signal.SIGWINCH, signal.SIGTTIN,
           signal.SIGTTOU)


# -- in the service ---------------------------------------------------------------------------

def start(server):
    """on_starting: fork the zygote (no zygote where it has no runtime directory, with
    preload_app (the master holds the app), or without pidfds)."""
    directory = os.environ.get("RUNTIME_DIRECTORY", "").split(":")[0]
    cfg = server.cfg
    if not directory or not cfg.chdir or cfg.preload_app or not hasattr(os, "pidfd_open"):
        return
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    master = os.getpid()
    first = os.fork()
    if first:
        os.waitpid(first, 0)
        return
    try:  # the intermediate process: a pidfd of the master (alive: it waits for us), then go
        watch = os.pidfd_open(master)
        if os.fork() == 0:
            try:
                serve(os.path.join(directory, NAME), cfg.chdir, watch)
            finally:
                os._exit(0)
    finally:
        os._exit(0)


def serve(path, chdir, watch):
    """The zygote's loop: one request at a time, until the master ends."""
    _close_fds(keep={watch})
    for sig in IGNORED:
        signal.signal(sig, signal.SIG_IGN)
    state = {
        "environ": _exec_environ(),
        "venv": os.path.realpath(sys.prefix),
        "env_file": os.path.join(os.path.dirname(os.path.normpath(chdir)), "shared", "env"),
        "drop": {os.path.dirname(os.path.abspath(sys.argv[0])),
                 os.path.dirname(os.path.realpath(sys.argv[0])), chdir},
        "watch": watch,
        "pid": os.getpid(),
    }
    state["env"] = _digest(state["env_file"])
    _rename(f"flasksample zygote: preflights for {chdir}")
    listener, inode = _listen(path)
    import gc
    gc.freeze()  # what the master left stays shared with it and with every preflight
    poller = select.poll()
    poller.register(listener, select.POLLIN)
    poller.register(watch, select.POLLIN)
    signal.signal(signal.SIGTERM, _stop)  # (supervisor's stop signals the whole group)
    try:
        while not state.get("gone"):
            if any(fd == watch for fd, _ in poller.poll()):
                break
            conn, _ = listener.accept()
            with conn:
                try:
                    handle(conn, state)
                except Exception:  # a client's mistake never ends the zygote
                    pass
    finally:
        try:
            if os.stat(path).st_ino == inode:  # not yet replaced by a new master's zygote
                os.unlink(path)
        except OSError:
            pass


def _stop(signum, frame):
    raise SystemExit(0)


def handle(conn, state):
    conn.settimeout(2)
    head, _, body = _read(conn, lambda data: b"\r\n\r\n" in data).partition(b"\r\n\r\n")
    request = head.split(b"\r\n")
    line = request[0].split()
    if line[:2] != [b"POST", PATH]:
        return _answer(conn, 503, b"the service's zygote speaks another protocol (another kit's)")
    length = next((int(h.split(b":", 1)[1]) for h in request[1:]
                   if h.lower().startswith(b"content-length:")), 0)
    if length > len(body):
        body += _read(conn, lambda data: len(body) + len(data) >= length)
    fields = [os.fsdecode(f) for f in body[:length].split(b"\0")[:-1]]
    limit, argv = float(fields[0]), fields[1:]
    why = cold_reason(argv, state)
    if why:
        return _answer(conn, 503, why.encode())
    answer = run(argv, limit, state, conn)
    if answer is not None:
        _answer(conn, *answer)


def cold_reason(argv, state):
    """Why this preflight needs the cold one ('' when the zygote can run it)."""
    if not (argv and argv[0].endswith("/.flasksample/preflight.py")):
        return "a request the zygote does not understand"
    release = os.path.dirname(os.path.dirname(argv[0]))
    if os.path.realpath(os.path.join(release, ".venv")) != state["venv"]:
        return "the release's venv is not the one the service runs (requirements changed)"
    if _digest(state["env_file"]) != state["env"]:
        return "the env file changed since the service started"
    return ""


def run(argv, limit, state, conn):
    """Fork the preflight, wait for it (at most `limit` s, while the client and the master
    are there); the answer for the client (None: the client is gone)."""
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    out, into = os.pipe()
    pid = os.fork()
    if pid == 0:
        _child(argv, into, state, limit)
    os.close(into)
    output = bytearray()
    try:
        pidfd = os.pidfd_open(pid)
        poller = select.poll()
        for fd in (pidfd, out, conn.fileno(), state["watch"]):
            poller.register(fd, select.POLLIN)
        deadline = time.monotonic() + limit
        ended = None
        while ended is None:
            left = deadline - time.monotonic()
            events = dict(poller.poll(max(0, left) * 1000)) if left > 0 else {}
            if out in events and not _pull(out, output):
                poller.unregister(out)  # (the app may still hold it: its end is not the child's)
            if pidfd in events:
                ended = "exit"
            elif state["watch"] in events:
                ended = "master"
            elif conn.fileno() in events:  # the client sends nothing more: this is its end
                ended = "client"
            elif left <= 0:
                ended = "time"
        os.close(pidfd)
    finally:
        # the app's own processes go with it (the child is a zombie until reaped: its group
        # id cannot be taken by another)
        for kill in (os.killpg, os.kill):
            try:
                kill(pid, signal.SIGKILL)
            except OSError:
                pass
        _, status = os.waitpid(pid, 0)
        os.set_blocking(out, False)
        while _pull(out, output):
            pass
        os.close(out)
    if ended == "master":
        state["gone"] = True
        return 503, b"the service stopped"
    if ended == "client":
        return None
    if ended == "time":
        output += f"preflight: stopped after {limit:g} s (its time limit: the app hung loading or answering)\n".encode()
    elif os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        name = signal.Signals(sig).name if sig in set(signal.Signals) else f"signal {sig}"
        output += f"preflight: ended by {name}\n".encode()
    good = ended == "exit" and os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    return (200 if good else 422), bytes(output[-KEEP:])


def _pull(fd, into):
    """Read what is there; False at its end."""
    try:
        data = os.read(fd, 65536)
    except BlockingIOError:
        return False
    into += data
    if len(into) > 2 * KEEP:
        del into[:-KEEP]
    return bool(data)


def _child(argv, out, state, limit):
    """The preflight, as `python preflight.py ARGS` would run it; never returns."""
    code = 1
    try:
        os.setsid()
        _die_with_parent(state["pid"])
        _rename(f"flasksample zygote: preflight of {os.path.dirname(os.path.dirname(argv[0]))}")
        signal.alarm(int(limit) + 2)  # should the zygote itself be gone
        for sig in (*IGNORED, signal.SIGTERM):
            signal.signal(sig, signal.SIG_DFL)
        os.dup2(out, 1)
        os.dup2(out, 2)
        _close_fds(keep=set())
        release = os.path.dirname(os.path.dirname(argv[0]))
        os.environ.clear()
        os.environ.update({k: v for k, v in state["environ"].items() if k not in NOT_INHERITED})
        os.chdir(release)
        _forget(release, state["drop"])
        sys.argv = list(argv)
        import runpy
        try:
            runpy.run_path(argv[0], run_name="__main__")
            code = 0
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
            if not isinstance(e.code, (int, type(None))):
                print(e.code, file=sys.stderr)
        except BaseException:
            import traceback
            traceback.print_exc()
    except BaseException:
        try:
            import traceback
            traceback.print_exc()
        except BaseException:
            pass
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code & 0xFF)


def _forget(release, drop):
    """Nothing of the master's release stays importable: modules and sys.path entries under the
    app's root (but its venvs) go; the release's kit dir is sys.path[0], as for a script."""
    import importlib
    root = os.path.dirname(os.path.dirname(release))
    roots = tuple({root, os.path.realpath(root)})
    inside = tuple(r + os.sep for r in roots)
    venvs = tuple(os.path.join(r, "venvs") + os.sep for r in roots)

    def ours(path):  # (by name: the root's own path or its real one, never resolved per module)
        return not path or path in drop or path in roots or (
            path.startswith(inside) and not path.startswith(venvs))

    for name, module in list(sys.modules.items()):
        where = getattr(module, "__file__", None) or ""
        if name in ("__config__", "flasksample_handover") or (where and ours(where)):
            del sys.modules[name]
    sys.path[:] = [os.path.join(release, ".flasksample")] + [p for p in sys.path if not ours(p)]
    sys.path_importer_cache.clear()
    importlib.invalidate_caches()
    # gunicorn's one default taken from the directory it was imported in (the master's)
    for setting in getattr(sys.modules.get("gunicorn.config"), "KNOWN_SETTINGS", ()):
        if getattr(setting, "name", None) == "chdir":
            setting.default = os.getcwd()


def _die_with_parent(parent):
    try:
        import ctypes
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    except Exception:  # without it: the zygote's kill and the alarm
        pass
    if os.getppid() != parent:
        os._exit(1)


def _close_fds(keep):
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd > 2 and fd not in keep:
            try:
                os.close(fd)
            except OSError:
                pass


def _exec_environ():
    """The environment the master was started with (gunicorn's raw_env is the config's)."""
    try:
        with open("/proc/self/environ", "rb") as f:
            pairs = [p.partition(b"=") for p in f.read().split(b"\0") if b"=" in p]
        return {os.fsdecode(k): os.fsdecode(v) for k, _, v in pairs}
    except OSError:
        return dict(os.environ)


def _digest(path):
    import hashlib
    try:
        with open(path, "rb") as f:
            return hashlib.sha256(f.read()).hexdigest()
    except FileNotFoundError:
        return "none"
    except OSError as e:
        return f"unreadable {e.errno}"


def _rename(title):
    """Not another `gunicorn …` in ps (the kit and its tests count masters by that)."""
    try:
        with open("/proc/self/comm", "w") as f:
            f.write("zygote")
        with open("/proc/self/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        start, end = int(fields[45]), int(fields[46])  # arg_start, arg_end
        import ctypes
        text = title.encode()[:end - start - 1]
        ctypes.memmove(start, text + b"\0" * (end - start - len(text)), end - start)
    except Exception:
        pass


def _listen(path):
    """Bound beside `path`, then renamed onto it: a client finds the old zygote or this one."""
    tmp = f"{path}.{os.getpid()}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    mask = os.umask(0o177)
    try:
        if os.path.lexists(tmp):
            os.unlink(tmp)
        sock.bind(tmp)
    finally:
        os.umask(mask)
    sock.listen(8)
    os.rename(tmp, path)
    return sock, os.stat(path).st_ino


def _read(conn, done, most=65536):
    data = b""
    while not done(data):
        more = conn.recv(65536)
        if not more or len(data) > most:
            raise ValueError("an incomplete request")
        data += more
    return data


def _answer(conn, status, body):
    reason = {200: "OK", 422: "Unprocessable Content", 503: "Service Unavailable"}[status]
    conn.settimeout(5)
    conn.sendall(f"HTTP/1.1 {status} {reason}\r\nContent-Length: {len(body)}\r\n"
                 f"Connection: close\r\n\r\n".encode() + body)
