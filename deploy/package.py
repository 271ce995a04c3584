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
              "node_modules", ".DS_Store", "REVISION"}
JUNK_SUFFIXES = (".pyc", ".pyo", ".egg-info", ".swp")
# never shipped, committed or not: secrets belong in `fab env.set`, not in a release every
# process of the app (and, on a misconfigured host, other users) can read
SECRET_NAMES = {"instance", ".ssh", ".aws", ".gnupg", ".netrc", ".pypirc", ".npmrc",
                ".git-credentials", ".htpasswd", "id_rsa", "id_dsa", "id_ecdsa", "id_ed25519",
                "credentials.json", "service-account.json"}
SECRET_PREFIXES = (".env",)          # .env, .env.production, .envrc
SECRET_SUFFIXES = (".pem", ".key", ".p12", ".pfx", ".jks", ".keystore", ".kdbx")


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


def is_secret(name: str) -> bool:
    """A path that looks like a secret: env files, Flask's instance/ folder, private keys,
    credential files."""
    return any(p in SECRET_NAMES or p.startswith(SECRET_PREFIXES) or p.endswith(SECRET_SUFFIXES)
               for p in Path(name).parts)


def secrets_note(left_out: list[str]) -> str:
    if not left_out:
        return ""
    shown = ", ".join(sorted(left_out)[:5]) + (", …" if len(left_out) > 5 else "")
    return f"left out as likely secrets (set them with fab env.set): {shown}"


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


def _gzip_tar(tar_bytes: bytes) -> tuple[bytes, list[str]]:
    """Re-pack a plain tar without junk or secret entries, gzipped; and the secrets left out."""
    src = tarfile.open(fileobj=io.BytesIO(tar_bytes))
    buf, left_out = io.BytesIO(), []
    with tarfile.open(fileobj=buf, mode="w:gz", compresslevel=6) as dst:
        for member in src.getmembers():
            if is_junk(member.name):
                continue
            if is_secret(member.name):
                left_out.append(member.name.removeprefix("./"))
                continue
            dst.addfile(member, src.extractfile(member) if member.isfile() else None)
    return buf.getvalue(), left_out


def pack_git(app_dir: Path) -> tuple[bytes, str, str] | None:
    # One git for where the app is and its commit; then the archive and the status at once.
    found = _git(app_dir, "rev-parse", "--show-toplevel", "--show-prefix", "--short=7", "HEAD")
    lines = found.split("\n") if found else []
    if len(lines) != 3 or not lines[2]:
        return None
    top, prefix, rev = lines
    rel = prefix.rstrip("/") or "."
    tree = "HEAD" if rel == "." else f"HEAD:{rel}"
    try:
        status = subprocess.Popen(["git", "-C", str(app_dir), "status", "--porcelain", "--", "."],
                                  stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    except OSError:
        return None
    with status:
        out = subprocess.run(["git", "-C", top, "archive", "--format=tar", tree], capture_output=True)
        listed = status.communicate(timeout=30)[0]
    dirty = listed.decode().strip() if status.returncode == 0 else ""
    if out.returncode != 0:  # e.g. nothing of app_dir committed yet
        return None
    note = f"uncommitted changes in {rel}/ are not included (deploying commit {rev})" if dirty else ""
    data, left_out = _gzip_tar(out.stdout)
    return data, rev, "; ".join(n for n in (note, secrets_note(left_out)) if n)


def pack_dir(app_dir: Path) -> tuple[bytes, str, str]:
    buf, left_out = io.BytesIO(), []
    digest = hashlib.sha256()
    with tarfile.open(fileobj=buf, mode="w:gz", compresslevel=6) as tar:
        for path in sorted(app_dir.rglob("*")):
            rel = path.relative_to(app_dir).as_posix()
            if is_junk(rel) or path.is_symlink() or not (path.is_file() or path.is_dir()):
                continue
            if is_secret(rel):
                if not is_secret(str(Path(rel).parent)):  # name a secret directory once
                    left_out.append(rel + ("/" if path.is_dir() else ""))
                continue
            tar.add(path, arcname=rel, recursive=False)
            if path.is_file():
                digest.update(rel.encode() + b"\0" + path.read_bytes())
    return buf.getvalue(), digest.hexdigest()[:7], secrets_note(left_out)


def read_member(data: bytes, name: str) -> bytes | None:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        for member in tar.getmembers():
            if member.isfile() and member.name.removeprefix("./") == name:
                return tar.extractfile(member).read()
    return None


KIT_GUNICORN_CONF = Path(__file__).resolve().parent / "kit" / "gunicorn_conf.py"
# The hand-over hooks (loaded by the config), supervisor's keeper program, the preflight and
# its zygote (forked by the master: the config loads it).
KIT_PROGRAMS = [Path(__file__).resolve().parent / "kit" / name
                for name in ("handover.py", "keeper.py", "preflight.py", "zygote.py")]


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
                                 **{p.name: p.read_bytes() for p in KIT_PROGRAMS}})
    note = "; ".join(n for n in (note, "" if source == "requirements.txt" else
                                 f"requirements exported from {source}") if n)
    return Package(release_id(rev, now), rev, data, requirements.requirements_hash(pinned.encode(), s.python), note)
