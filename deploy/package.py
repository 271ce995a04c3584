"""Packs the app for upload (local side): the committed tree of app_dir, or the directory.

In a git checkout the release is the commit's tree of `app_dir` (`git archive`), named after
the short commit id; uncommitted changes are not shipped and a note says so. Outside git the
directory is packed minus junk, named after a hash of its content.
"""
from __future__ import annotations

import hashlib
import io
import subprocess
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path

from deploy import layout, requirements
from deploy.errors import KitError
from deploy.settings import Settings

JUNK_NAMES = {".git", "__pycache__", ".venv", "venv", ".pytest_cache", ".mypy_cache",
              "node_modules", ".DS_Store", "REVISION", ".env"}
JUNK_SUFFIXES = (".pyc", ".pyo", ".egg-info", ".swp")


@dataclass(frozen=True)
class Package:
    release: str      # e.g. 20261126-231500.123-abc1234
    rev: str          # commit id or content hash (7 chars)
    data: bytes       # tar.gz of the app directory
    req_hash: str     # identifies the venv this release needs
    note: str = ""    # e.g. "uncommitted changes in app/ are not included"


def is_junk(name: str) -> bool:
    parts = Path(name).parts
    return any(p in JUNK_NAMES or p.endswith(JUNK_SUFFIXES) for p in parts)


def requirements_hash(requirements: bytes, python: str) -> str:
    return hashlib.sha256(python.encode() + b"\0" + requirements).hexdigest()[:12]


def release_id(rev: str, now: float | None = None) -> str:
    now = time.time() if now is None else now
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(now))
    return f"{stamp}.{int(now * 1000) % 1000:03d}-{rev}"


def _git(app_dir: Path, *args: str) -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(app_dir), *args], capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.decode().strip() if out.returncode == 0 else None


def _gzip_tar(tar_bytes: bytes) -> bytes:
    """Re-pack a plain tar without junk entries, gzipped."""
    src = tarfile.open(fileobj=io.BytesIO(tar_bytes))
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", compresslevel=6) as dst:
        for member in src.getmembers():
            if is_junk(member.name):
                continue
            dst.addfile(member, src.extractfile(member) if member.isfile() else None)
    return buf.getvalue()


def pack_git(app_dir: Path) -> tuple[bytes, str, str] | None:
    top = _git(app_dir, "rev-parse", "--show-toplevel")
    if not top:
        return None
    rel = app_dir.resolve().relative_to(Path(top).resolve()).as_posix()
    rev = _git(app_dir, "rev-parse", "--short=7", "HEAD")
    tree = "HEAD" if rel == "." else f"HEAD:{rel}"
    if not rev or _git(app_dir, "rev-parse", "--verify", "-q", tree) is None:
        return None
    out = subprocess.run(["git", "-C", top, "archive", "--format=tar", tree], capture_output=True)
    if out.returncode != 0:
        return None
    dirty = _git(app_dir, "status", "--porcelain", "--", ".")
    note = f"uncommitted changes in {rel}/ are not included (deploying commit {rev})" if dirty else ""
    return _gzip_tar(out.stdout), rev, note


def pack_dir(app_dir: Path) -> tuple[bytes, str, str]:
    buf = io.BytesIO()
    digest = hashlib.sha256()
    with tarfile.open(fileobj=buf, mode="w:gz", compresslevel=6) as tar:
        for path in sorted(app_dir.rglob("*")):
            rel = path.relative_to(app_dir).as_posix()
            if is_junk(rel) or path.is_symlink() or not (path.is_file() or path.is_dir()):
                continue
            tar.add(path, arcname=rel, recursive=False)
            if path.is_file():
                digest.update(rel.encode() + b"\0" + path.read_bytes())
    return buf.getvalue(), digest.hexdigest()[:7], ""


def read_member(data: bytes, name: str) -> bytes | None:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        for member in tar.getmembers():
            if member.isfile() and member.name.removeprefix("./") == name:
                return tar.extractfile(member).read()
    return None


KIT_GUNICORN_CONF = Path(__file__).resolve().parent / "kit" / "gunicorn_conf.py"
KIT_HANDOVER = Path(__file__).resolve().parent / "kit" / "handover.py"


def with_kit_files(data: bytes, files: dict[str, bytes]) -> bytes:
    """The archive plus the kit's own files (under .flasksample/ in the release)."""
    src = tarfile.open(fileobj=io.BytesIO(data))
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", compresslevel=6) as dst:
        for member in src.getmembers():
            dst.addfile(member, src.extractfile(member) if member.isfile() else None)
        for name, content in files.items():
            info = tarfile.TarInfo(f"{layout.KIT_IN_RELEASE}/{name}")
            info.size, info.mode, info.mtime = len(content), 0o644, 0
            dst.addfile(info, io.BytesIO(content))
    return buf.getvalue()


def build(s: Settings, now: float | None = None) -> Package:
    app_dir = s.local_app_dir
    packed = pack_git(app_dir) or pack_dir(app_dir)
    data, rev, note = packed
    pinned, source = requirements.pinned(lambda name: read_member(data, name), s.requirements)
    data = with_kit_files(data, {"requirements.txt": pinned.encode(),
                                 "gunicorn.conf.py": KIT_GUNICORN_CONF.read_bytes(),
                                 "handover.py": KIT_HANDOVER.read_bytes()})
    note = "; ".join(n for n in (note, "" if source == "requirements.txt" else
                                 f"requirements exported from {source}") if n)
    return Package(release_id(rev, now), rev, data, requirements_hash(pinned.encode(), s.python), note)
