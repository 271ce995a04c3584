"""flasksample: the package behind the Fabric tasks in fabfile.py.

Pure builders (settings in, shell lines and file contents out) live in the submodules;
only `deploy.runner` and the task layer talk to servers.
"""
import sys


def write_bytecode() -> None:
    """Let Python cache the kit's compiled modules (.pyc) again, as it does by default.

    Invoke's CLI (`fab`, `flasksample`) turns that off for its whole process unless given
    --write-pyc, to keep a tasks.py's directory clean. The kit is a library, though: from a
    checkout (`make venv` installs it editable), every run compiled each module it loaded
    again (~85 ms of CPU of a no-op `fab setup`). Python's own switch (-B or
    PYTHONDONTWRITEBYTECODE) still decides."""
    sys.dont_write_bytecode = bool(sys.flags.dont_write_bytecode)


write_bytecode()  # `fab` has parsed its options (and turned it off) before it loads fabfile.py
