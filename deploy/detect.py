"""What the kit can tell about an app from its files alone: WSGI entry, requirements, static dir.

Pure reads of a local directory, no imports of the app's code. `flasksample init` writes what
is found into fabric.yaml; settings use `static_folder` when `static_dir` is left empty.
"""
from __future__ import annotations

import re
from pathlib import Path

FACTORY_RE = re.compile(r"^def (create_app|make_app)\(\s*\)", re.M)
APP_RE = re.compile(r"^(app|application)\s*=\s*\S", re.M)
SKIP_DIRS = {"tests", "test", "docs", "migrations", "node_modules", "venv", ".venv", "build", "dist"}


def _entry_in(source: str, module: str) -> str | None:
    if m := APP_RE.search(source):
        return f"{module}:{m.group(1)}"
    if m := FACTORY_RE.search(source):
        return f"{module}:{m.group(1)}()"
    return None


def wsgi_entry(app_dir: Path) -> str | None:
    """`module:attr` or `module:factory()`: wsgi.py first, then packages, then modules."""
    candidates = [app_dir / "wsgi.py"]
    candidates += sorted(p / "__init__.py" for p in app_dir.iterdir()
                         if p.is_dir() and p.name not in SKIP_DIRS and not p.name.startswith("."))
    candidates += sorted(p for p in app_dir.glob("*.py")
                         if p.name not in ("wsgi.py", "setup.py", "fabfile.py", "conftest.py",
                                           "gunicorn.conf.py"))
    for path in candidates:
        if not path.is_file():
            continue
        module = path.parent.name if path.name == "__init__.py" else path.stem
        if not re.fullmatch(r"[A-Za-z_]\w*", module):
            continue
        if entry := _entry_in(path.read_text(errors="replace"), module):
            return entry
    return None


def module_root(app_dir: Path, module: str) -> Path:
    """The directory Flask takes as the app's root_path for a WSGI module: the package's own
    directory, or the one holding a plain module."""
    as_path = app_dir / module.replace(".", "/")
    return as_path if (as_path / "__init__.py").is_file() else as_path.parent


def static_folder(app_dir: Path, module: str) -> str:
    """Flask's default static folder for that module, relative to app_dir ('static' if none)."""
    for candidate in (module_root(app_dir, module) / "static", app_dir / "static"):
        if candidate.is_dir():
            return candidate.relative_to(app_dir).as_posix()
    return (module_root(app_dir, module) / "static").relative_to(app_dir).as_posix()


def requirements_source(app_dir: Path) -> str:
    """'requirements.txt' when there is one, else 'pyproject.toml' (its lock is found later)."""
    if (app_dir / "requirements.txt").is_file() or not (app_dir / "pyproject.toml").is_file():
        return "requirements.txt"
    return "pyproject.toml"


def project_name(app_dir: Path) -> str:
    """A service/user name from pyproject's name or the directory's name."""
    name = app_dir.resolve().name
    pyproject = app_dir / "pyproject.toml"
    if pyproject.is_file():
        import tomllib

        try:
            name = tomllib.loads(pyproject.read_text()).get("project", {}).get("name", name)
        except tomllib.TOMLDecodeError:
            pass
    name = re.sub(r"[^a-z0-9_-]+", "-", name.lower()).strip("-_")
    if not name or not name[0].isalpha():
        name = "app" + (f"-{name}" if name else "")
    return name[:32]
