"""The deploy's preflight (shipped in every release as .flasksample/preflight.py): load the new
release the way a gunicorn worker does and serve its health path, in one process, before
anything of it takes traffic.

    python preflight.py PATH TOP TIMEOUT GUNICORN-OPTIONS… WSGI

Run by the kit's prepare (deploy/remote/prepare.sh) as the app runs: warm, in a child of the
running service's zygote (zygote.py: the service's own cgroup, user, env and sandbox, gunicorn
and the framework already imported) when the release runs the service's venv and env file;
else cold, under systemd in a transient unit with the service's user, env file, working
directory and sandbox, under supervisor as the program's user and umask, with the env file
sourced. gunicorn's own code
does the work: its config loading (the kit's gunicorn.conf.py, then the app's, --chdir,
raw_env), `import_app` (module:app or module:factory()), a sync worker's `load_wsgi` and
`post_worker_init` hooks, and its request parser, WSGI environ and response writer for
`GET PATH` over a socket pair. No master, no fork, no listening socket, no polling from
outside: the answer is here as soon as the app is loaded.

Good: a status from 200 to below TOP, three times in a row; answers are asked again (every
20 ms) until then, for up to TIMEOUT seconds (counted from the start, loading included; at
least once, and a good answer is always asked again until three or a bad one). Exit 0 when good, else 1 with the last answer
(an import error ends it at once, with gunicorn's traceback).
"""
import os
import socket
import sys
import threading
import time


def ask(worker, path):
    """One `GET path` through the worker's own request handling; the HTTP status (0: none)."""
    server, client = socket.socketpair()
    got = []
    client.sendall(f"GET {path} HTTP/1.1\r\nHost: localhost\r\nUser-Agent: flasksample-preflight\r\n"
                   "Accept: */*\r\nConnection: close\r\n\r\n".encode())
    # The client reads the answer while the worker writes it, and hangs up at its end, as curl
    # would (the worker lingers until then).
    reader = threading.Thread(target=lambda: got.append(_read_all(client)))
    reader.start()
    try:
        worker.handle(server, server, "")  # closes `server` once the answer is written
    finally:
        reader.join()
    head = got[0].split(b"\r\n", 1)[0].split() if got else []
    return int(head[1]) if len(head) > 1 and head[1].isdigit() else 0


def _read_all(sock):
    parts = []
    with sock:
        while chunk := sock.recv(65536):
            parts.append(chunk)
    return b"".join(parts)


def load(options):
    """gunicorn's config and a sync worker with the app loaded, as in a worker's init_process."""
    # gunicorn reads its options from sys.argv; argv[0] stays this program's path, so an app
    # can tell the preflight from its service ("preflight" in sys.argv, as before).
    sys.argv = [sys.argv[0], *options]
    from gunicorn import SERVER_SOFTWARE
    from gunicorn.app.wsgiapp import WSGIApplication
    from gunicorn.workers.sync import SyncWorker

    os.environ["SERVER_SOFTWARE"] = SERVER_SOFTWARE  # as gunicorn's master sets it
    app = WSGIApplication("%(prog)s [OPTIONS] [APP_MODULE]", prog="gunicorn")
    cfg = app.cfg
    for name, value in (cfg.env or {}).items():
        os.environ[name] = value
    worker = SyncWorker(1, os.getppid(), [], app, cfg.timeout, cfg, cfg.logger_class(cfg))
    worker.pid = os.getpid()
    worker.load_wsgi()
    cfg.post_worker_init(worker)
    return worker


def main(argv):
    path, top, timeout, options = argv[0], int(argv[1]), float(argv[2]), argv[3:]
    deadline = time.monotonic() + timeout
    worker = load(options)
    good = 0
    while True:  # asked at least once, however long the loading took
        status = ask(worker, path)
        good = good + 1 if 200 <= status < top else 0
        if good >= 3:
            return 0
        if not good:
            if time.monotonic() >= deadline:
                break
            time.sleep(0.02)
    print(f"last health answer: HTTP {status or 'none'}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
