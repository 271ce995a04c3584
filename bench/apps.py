"""Copies of app/ (the kit snapshot's, see hosts.snapshot_kit) to deploy: `/` says something else (a code-only change), or the import raises.

Each copy lives in a temporary directory outside git (so the kit packs the directory) with a
fabric.yaml next to it pointing `flasksample.app_dir` at it; requirements are unchanged, so
the host's venv is reused (a warm, code-only deploy), unless a variant asks for a change.
"""
from __future__ import annotations

import shutil
from pathlib import Path

from bench import hosts

HELLO = 'return "Hello World!"'


def variant(base: Path, tag: str, broken: bool = False, manager: str | None = None,
            requirements: str = "") -> str:
    """Make base/<tag>/app (a copy of app/ answering `Hello World! <tag>`); return its fabric.yaml
    (with `process_manager: <manager>` when given; the kit's default, systemd, otherwise).
    `requirements`: a comment added to requirements.txt — the same packages, but a requirements
    change for the kit (a new venv, so a new gunicorn master)."""
    d = base / tag
    app = d / "app"
    shutil.copytree(hosts.KIT / "app", app, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "REVISION", ".venv"))
    serve = app / "serve.py"
    text = serve.read_text()
    if HELLO not in text:
        raise RuntimeError(f"app/serve.py no longer contains {HELLO!r}: update bench/apps.py")
    text = text.replace(HELLO, f'return "Hello World! {tag}"')
    if broken:
        text += '\nraise RuntimeError("bench: this release is broken on purpose")\n'
    serve.write_text(text)
    if requirements:
        reqs = app / "requirements.txt"
        reqs.write_text(reqs.read_text() + f"# bench: {requirements}\n")
    cfg = d / "fabric.yaml"
    cfg.write_text(f"flasksample:\n  app_dir: {app}\n" + (f"  process_manager: {manager}\n" if manager else ""))
    return str(cfg)


def edit_in_place_cmd(root: str, tag: str) -> str:
    """Shell line changing the body of the release `current` points to (the article's `git pull`)."""
    return (f"sed -i 's/return \"Hello World![^\"]*\"/return \"Hello World! {tag}\"/' "
            f"$(readlink -f {root}/current)/serve.py")
