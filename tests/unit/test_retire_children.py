"""lib.sh's `retire_children` (a master's children, replaced on a reload) with real bash and real
processes: a stand-in master whose children end, turn into zombies, rename themselves, or carry
nginx's titles, as gunicorn's and nginx's do."""
import subprocess
import sys
import time
from pathlib import Path

import pytest

from deploy.shell import remote_file, script

# A master that forks its children and never reaps them (a zombie stays one until the test
# ends). Each child, on TERM: "exit" ends, "retire" names itself as the kit's worker_exit hook
# does and stays, "ignore" stays as it is.
MASTER = """
import os, signal, sys, time
def child(how):
    def on_term(*_):
        if how == "exit":
            os._exit(0)
        if how == "retire":
            with open("/proc/self/comm", "w") as f:
                f.write("kit-retired")
    signal.signal(signal.SIGTERM, on_term)
    while True:
        time.sleep(1)
pids = []
for how in sys.argv[1:]:
    pid = os.fork()
    if pid == 0:
        child(how)
    pids.append(pid)
print(" ".join(map(str, pids)), flush=True)
time.sleep(60)
"""


@pytest.fixture
def master():
    started = []

    def start(*how):
        p = subprocess.Popen([sys.executable, "-c", MASTER, *how], stdout=subprocess.PIPE, text=True)
        started.append(p)
        return p.pid, [int(x) for x in p.stdout.readline().split()]
    yield start
    for p in started:
        p.kill()
        p.wait()


def retire(parent, seconds, done, command):
    text = script(remote_file("lib.sh"), f"rc=0; retire_children {parent} {seconds} {done} {command} || rc=$?",
                  'echo "rc=$rc"')
    return subprocess.run(["bash", "-c", text], capture_output=True, text=True, timeout=30)


def state(pid):
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]


def test_it_returns_once_the_old_children_exited_a_zombie_counts(master):
    parent, kids = master("exit", "exit")
    out = retire(parent, 20, "exited", f"kill {' '.join(map(str, kids))}")
    assert out.stdout.split() == ["rc=0"], out.stderr
    assert [state(k) for k in kids] == ["Z", "Z"]  # its parent never reaped them


def test_a_gunicorn_worker_named_retired_is_done_before_it_exits(master):
    parent, kids = master("retire", "retire")
    out = retire(parent, 20, "gunicorn_retired", f"kill {' '.join(map(str, kids))}")
    assert out.stdout.split() == ["rc=0"], out.stderr
    assert {state(k) for k in kids} <= {"S", "R"}  # still running, but past its last answer
    assert retire(parent, 0, "exited", "true").stdout.split() == ["rc=124"]


def test_children_still_there_after_the_bound_give_124_and_a_failed_command_its_status(master):
    parent, kids = master("ignore")
    assert retire(parent, 0, "gunicorn_retired", f"kill {kids[0]}").stdout.split() == ["rc=124"]
    assert retire(parent, 20, "exited", "false").stdout.split() == ["rc=1"]
    assert retire("''", 20, "exited", "true").stdout.split() == ["rc=0"]  # no master: nothing to wait for


def test_nginx_workers_count_once_they_are_shutting_down(tmp_path):
    def nginx(*titles):
        lines = [f"(exec -a {t!r} sleep 60) &" for t in titles]
        return subprocess.Popen(["bash", "-c", "\n".join(lines + ["wait"])])
    closing = nginx("nginx: worker process is shutting down", "nginx: worker process is shutting down")
    serving = nginx("nginx: worker process is shutting down", "nginx: worker process")
    try:
        for p in (closing, serving):  # both children run under their titles
            while subprocess.run(["pgrep", "-c", "-P", str(p.pid), "-f", "^nginx: "],
                                 capture_output=True, text=True).stdout.strip() != "2":
                time.sleep(0.05)
        assert retire(closing.pid, 20, "nginx_closing", "true").stdout.split() == ["rc=0"]
        assert retire(serving.pid, 0, "nginx_closing", "true").stdout.split() == ["rc=124"]
    finally:
        for p in (closing, serving):
            subprocess.run(["pkill", "-P", str(p.pid)])
            p.kill()
            p.wait()


def test_new_master_of_finds_the_child_a_usr2_made():
    """lib.sh's new_master_of: the child whose environment names its parent as GUNICORN_PID (what
    gunicorn gives the master it execs on USR2); the parent's other children are workers."""
    master = subprocess.Popen(["bash", "-c", "sleep 30 & GUNICORN_PID=$$ sleep 30 & GUNICORN_PID=1 sleep 30 & wait"])
    try:
        def named():  # the children, once all three have exec'd sleep with their environments
            kids = subprocess.run(["pgrep", "-P", str(master.pid), "-x", "sleep"], capture_output=True,
                                  text=True).stdout.split()
            return [k for k in kids if b"GUNICORN_PID=" in Path(f"/proc/{k}/environ").read_bytes()
                    ] if len(kids) == 3 else []
        while len(both := named()) < 2:
            time.sleep(0.02)
        born = [k for k in both if f"GUNICORN_PID={master.pid}\0".encode() in Path(f"/proc/{k}/environ").read_bytes()]
        text = script(remote_file("lib.sh"), f"new_master_of {master.pid}; echo $kit_born; new_master_of {born[0]}; echo \"$kit_born\" end")
        out = subprocess.run(["bash", "-c", text], capture_output=True, text=True, timeout=30)
        assert out.stdout.split() == born + ["end"], out.stderr
    finally:
        subprocess.run(["pkill", "-P", str(master.pid)])
        master.wait()
