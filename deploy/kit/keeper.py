"""The program supervisord runs for the app (shipped in every release as .flasksample/keeper.py):
it starts gunicorn and stays, so gunicorn's master can be handed over without supervisord
noticing — supervisord can only follow the process it started, and a hand-over replaces the
master (see handover.py).

    python3 keeper.py PIDFILE COMMAND...

- it becomes a child subreaper, so a handed-over master (a child of the old one) becomes its
  child once the old master exits;
- it offers gunicorn a notify socket (NOTIFY_SOCKET, as systemd would): when a new master's
  workers are all ready (handover.py sends MAINPID=), it TERMs the old master;
- it names the program's runtime directory (RUNTIME_DIRECTORY, as systemd would: where the
  master's preflight zygote listens, zygote.py);
- PIDFILE holds the current master's pid once it is ready (the kit's hand-over sends it USR2
  and waits for the file to name another);
- signals it gets (supervisorctl stop / signal HUP / USR2 …) go to the current master;
- it exits, with the master's status, when no gunicorn process is left.
Standard library only, Python 3.7+ (the server's python3).
"""
import ctypes
import os
import signal
import socket
import sys

PR_SET_CHILD_SUBREAPER = 36
FORWARD = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGHUP, signal.SIGUSR1,
           signal.SIGUSR2, signal.SIGTTIN, signal.SIGTTOU, signal.SIGWINCH)


def write_pid(path, pid):
    tmp = f"{path}.new"
    with open(tmp, "w") as f:
        f.write(f"{pid}\n")
    os.replace(tmp, path)


def fields(message):
    """An sd_notify message's `NAME=value` lines as a dict."""
    return dict(line.partition("=")[::2] for line in message.decode(errors="replace").splitlines())


def main(argv):
    pidfile, command = argv[1], argv[2:]
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    # A socket file only the app's user may write to (an abstract one would take anyone's word).
    address = os.path.join(os.path.dirname(os.path.abspath(pidfile)), "notify.sock")
    for path in (pidfile, address):  # left by a killed keeper: they name nothing of ours
        if os.path.exists(path):
            os.unlink(path)
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    mask = os.umask(0o177)
    notify.bind(address)
    os.umask(mask)
    master = os.fork()
    if master == 0:
        notify.close()
        os.environ["NOTIFY_SOCKET"] = address
        os.environ["RUNTIME_DIRECTORY"] = os.path.dirname(address)
        os.execvp(command[0], command)
    state = {"master": master, "status": 0, "ready": False}

    def forward(signum, _frame):
        try:
            os.kill(state["master"], signum)
        except ProcessLookupError:
            pass

    for sig in FORWARD:
        signal.signal(sig, forward)
    while True:
        try:
            while True:  # reap every child that ended (old masters, the master itself)
                pid, status = os.waitpid(-1, os.WNOHANG)
                if pid == 0:
                    break
                if pid == state["master"]:
                    state["status"] = os.waitstatus_to_exitcode(status) if hasattr(
                        os, "waitstatus_to_exitcode") else status >> 8
        except ChildProcessError:  # nothing left to keep
            for path in (pidfile, address):
                try:
                    os.unlink(path)
                except OSError:
                    pass
            return max(state["status"], 0)
        notify.settimeout(0.2)
        try:
            got = fields(notify.recv(4096))
        except (socket.timeout, InterruptedError):
            continue
        new = int(got["MAINPID"]) if got.get("MAINPID", "").isdigit() else None
        if got.get("READY") == "1" and not state["ready"]:
            # gunicorn says READY once its signal handlers are in place: only then may the
            # kit's hand-over send it USR2 (before, USR2 would kill it)
            write_pid(pidfile, state["master"])
            state["ready"] = True
        if new and new != state["master"]:
            old, state["master"] = state["master"], new
            write_pid(pidfile, new)
            try:
                os.kill(old, signal.SIGTERM)  # its workers finish what they serve, then it exits
            except ProcessLookupError:
                pass


if __name__ == "__main__":
    sys.exit(main(sys.argv))
