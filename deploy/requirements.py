"""The pinned requirement list a release installs, from the app's own files (local, pure).

    requirements.txt (or any file named by `requirements:`)  used as it is
    pyproject.toml + uv.lock                                  the lock exported: the packages the
                                                              project needs (no dev groups, no
                                                              extras), name==version ; marker
    pyproject.toml + pylock.toml                              every package of the lock (PEP 751)

What reaches the server is always a pinned list: a pyproject.toml without a lock is refused.
gunicorn is added, at the kit's pin, when the app does not list it.
"""
from __future__ import annotations

import hashlib
import re
from collections import defaultdict
from typing import Callable

from deploy.errors import KitError

GUNICORN_PIN = "gunicorn==27.0.1"
NAME_RE = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")

Reader = Callable[[str], "bytes | None"]


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def listed_names(text: str) -> set[str]:
    names = set()
    for line in text.splitlines():
        line = line.split("#", 1)[0]
        if line.strip() and not line.lstrip().startswith("-") and (m := NAME_RE.match(line)):
            names.add(canonical(m.group(1)))
    return names


def with_gunicorn(text: str) -> str:
    if "gunicorn" in listed_names(text):
        return text
    return text.rstrip("\n") + ("\n" if text.strip() else "") + \
        f"{GUNICORN_PIN}  # added by flasksample: the app does not list gunicorn\n"


def _toml(read: Reader, name: str) -> dict:
    import tomllib  # only for a pyproject app: setup reads the requirements too, and starts fast

    try:
        return tomllib.loads(read(name).decode())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise KitError(f"{name} does not parse ({e})", f"fix {name} (or regenerate the lock)") from None


def _line(name: str, version: str, markers: set[str]) -> str:
    if "" in markers or not markers:
        return f"{name}=={version}"
    ms = sorted(markers)
    return f"{name}=={version} ; " + (ms[0] if len(ms) == 1 else " or ".join(f"({m})" for m in ms))


def from_uv_lock(lock: dict) -> str:
    """The packages the project itself needs, walked from its entry in uv.lock."""
    by_name = defaultdict(list)
    for pkg in lock.get("package", []):
        by_name[canonical(pkg["name"])].append(pkg)
    roots = [p for ps in by_name.values() for p in ps
             if set(p.get("source", {})) & {"editable", "virtual"} and p["source"].get(
                 next(iter(set(p["source"]) & {"editable", "virtual"}))) == "."]
    if len(roots) != 1:
        raise KitError("uv.lock has no single project entry (source = editable/virtual '.')",
                       "run `uv lock` in the app's directory and commit uv.lock")
    markers: dict[str, set[str]] = defaultdict(set)
    seen: set[tuple[str, str]] = set()
    todo = [(roots[0], "")]
    while todo:
        pkg, extra = todo.pop()
        deps = pkg.get("dependencies", []) if not extra else \
            pkg.get("optional-dependencies", {}).get(extra, [])
        for dep in deps:
            name = canonical(dep["name"])
            # An edge's own marker only (not the AND along the path): at worst a package is
            # installed where it is not needed, never left out where it is.
            markers[name].add(dep.get("marker", ""))
            for want in ("", *dep.get("extra", [])):
                if (name, want) not in seen:
                    seen.add((name, want))
                    if len(by_name[name]) != 1:
                        raise KitError(f"uv.lock holds {len(by_name[name])} versions of {name} "
                                       "(a forked resolution)", "export it yourself: `uv export "
                                       "--no-dev --no-hashes -o requirements.txt`, commit it, "
                                       "and set requirements: requirements.txt")
                    todo.append((by_name[name][0], want))
    lines = []
    for name in sorted(markers):
        pkg = by_name[name][0]
        if "registry" not in pkg.get("source", {}):
            raise KitError(f"uv.lock installs {name} from {pkg.get('source')}, not a package index",
                           "export it yourself (uv export) and set requirements: requirements.txt")
        lines.append(_line(pkg["name"], pkg["version"], markers[name]))
    return "\n".join(lines) + "\n"


def from_pylock(lock: dict) -> str:
    lines = []
    for pkg in lock.get("packages", []):
        if "version" not in pkg:
            raise KitError(f"pylock.toml has {pkg.get('name')} without a version (a VCS or "
                           "directory package)", "set requirements: to a requirements file")
        lines.append(_line(pkg["name"], pkg["version"], {pkg.get("marker", "")}))
    return "\n".join(sorted(lines)) + "\n"


def requirements_hash(requirements: bytes, python: str) -> str:
    """Names the venv (venvs/<hash>) for these pinned requirements under this python."""
    return hashlib.sha256(python.encode() + b"\0" + requirements).hexdigest()[:12]


def pinned(read: Reader, setting: str) -> tuple[str, str]:
    """(pinned requirement lines, where they came from) for a release, gunicorn included.

    `read(name)` returns a file of the release (bytes) or None; `setting` is `requirements:`
    ('' = requirements.txt, else pyproject.toml)."""
    name = setting or ("requirements.txt" if read("requirements.txt") is not None
                       or read("pyproject.toml") is None else "pyproject.toml")
    if name != "pyproject.toml":
        text = read(name)
        if text is None:
            raise KitError(f"{name} is not in the release (nor a pyproject.toml)",
                           "commit a requirements.txt or a pyproject.toml with its uv.lock")
        return with_gunicorn(text.decode()), name
    if read("pyproject.toml") is None:
        raise KitError("requirements: pyproject.toml, but the release has no pyproject.toml",
                       "commit it, or set requirements: to your requirements file")
    if read("uv.lock") is not None:
        return with_gunicorn(from_uv_lock(_toml(read, "uv.lock"))), "uv.lock"
    if read("pylock.toml") is not None:
        return with_gunicorn(from_pylock(_toml(read, "pylock.toml"))), "pylock.toml"
    raise KitError("pyproject.toml has no lock file next to it, so nothing would be pinned",
                   "run `uv lock` (or `pip lock`) and commit uv.lock / pylock.toml, or set "
                   "requirements: to a pinned requirements file")
