"""A blocking exclusive file lock (flock) as a context manager, safe across threads and processes."""
import contextlib
import fcntl
import os
from pathlib import Path


@contextlib.contextmanager
def file_lock(path: Path):
    """Hold an exclusive flock on `path` (created if missing) for the duration of the block.

    Each call opens its own file descriptor, so two threads of one process exclude each other
    as well as two processes do.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
