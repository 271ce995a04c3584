"""A stand-in for Debian's pip wheel (/usr/share/python-wheels/pip-*.whl) for deploy/remote/venv.sh's tests."""
from __future__ import annotations

import zipfile
from pathlib import Path


def fake_pip_wheel(wheels: Path, main: str) -> None:
    """wheels/pip-99.1-py3-none-any.whl, as venv.sh finds Debian's: `python …whl/pip ARGS` runs
    `main` (Python source) instead of pip."""
    wheels.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(wheels / "pip-99.1-py3-none-any.whl", "w") as z:
        z.writestr("pip/__init__.py", "")
        z.writestr("pip/__main__.py", main)
