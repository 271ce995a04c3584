"""A deploy lock whose holder is gone is stale: the next deploy breaks it by itself (no --force).

Found by the fault suite (tests/e2e/test_faults.py): a host rebooted mid-deploy, or fab killed
or cut off between prepare and switch, left a lock only --force could break. Runs lib.sh's real
lock functions in bash on a temp tree (the same harness as test_release.py).
"""
import os
import re

from deploy.lock import Holder
from test_release import R1, R2, run_lock, srv  # noqa: F401  (srv is a fixture)

BOB = Holder("bob@b (pid 9)", "token-bob")


def proc_id(pid: int) -> str:
    stat = open(f"/proc/{pid}/stat").read()
    return f"{pid} {stat.rsplit(') ', 1)[1].split()[19]}"


def boot_id() -> str:
    return open("/proc/sys/kernel/random/boot_id").read().strip()


def dead_lock(root, boot: str, session: str, workers: str = "", release: str = R2):
    lock = root / ".kit" / "lock"
    lock.mkdir()
    (lock / "token").write_text("token-dead\n")
    (lock / "holder").write_text(f"dead@gone (pid 1), release {release}\n")
    (lock / "since").write_text("2026-11-26T23:00:00Z\n")
    (lock / "boot").write_text(boot + "\n")
    (lock / "session").write_text(session + "\n" if session else "")  # as `session_id >` writes
    (lock / "workers").write_text(workers + "\n" if workers else "1 0\n")


def test_a_lock_from_before_a_reboot_is_broken_with_its_unswitched_release(srv):  # noqa: F811
    s, root, add, point = srv
    add(R1)
    point(R1)
    add(R2)  # prepared by the deploy the reboot killed, never switched to
    dead_lock(root, "00000000-0000-0000-0000-000000000000", proc_id(os.getpid()))
    out = run_lock(srv, f'lock_take "release {R1}"', BOB)
    assert out.returncode == 0, out.stdout + out.stderr
    assert re.match(r"broke a stale lock held by dead@gone \(pid 1\), release \S+ since \S+: "
                    r"the host rebooted since\n", out.stdout), out.stdout
    assert (root / ".kit/lock/token").read_text() == "token-bob\n"
    assert not (root / "releases" / R2).exists() and (root / "releases" / R1).exists()


def test_a_lock_whose_session_and_programs_ended_is_stale_but_never_the_current_release(srv):  # noqa: F811
    s, root, add, point = srv
    add(R1)
    point(R1)
    dead_lock(root, boot_id(), "999999 1", "999998 1", release=R1)
    out = run_lock(srv, f'lock_take "release {R2}"', BOB)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "the fab run that took it and its programs on this host are gone" in out.stdout
    assert (root / "releases" / R1).exists()  # current is never removed


def test_a_lock_with_a_live_session_or_program_is_refused(srv):  # noqa: F811
    s, root, add, _ = srv
    me = proc_id(os.getpid())
    dead_lock(root, boot_id(), me)
    assert run_lock(srv, f'lock_take "release {R2}"', BOB).returncode == 75
    (root / ".kit/lock/session").write_text("999999 1\n")
    (root / ".kit/lock/workers").write_text(f"999998 1\n{me}\n")
    assert run_lock(srv, f'lock_take "release {R2}"', BOB).returncode == 75
    # the same pid with another start time is another process: no longer the holder
    pid, start = me.split()
    (root / ".kit/lock/workers").write_text(f"{pid} {int(start) + 1}\n")
    assert run_lock(srv, f'lock_take "release {R2}"', BOB).returncode == 0


def test_a_lock_without_these_records_needs_force(srv):  # noqa: F811
    """Taken by an older kit, or not over SSH (no sshd ancestor): never judged stale."""
    s, root, _, _ = srv
    dead_lock(root, "00000000-0000-0000-0000-000000000000", "")
    out = run_lock(srv, f'lock_take "release {R2}"', BOB)
    assert out.returncode == 75 and "--force" in out.stdout
