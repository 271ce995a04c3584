"""deploy/package.py: what goes into a release (git tree or directory), its id and venv hash."""
from __future__ import annotations

import calendar
import io
import re
import subprocess
import tarfile

import pytest

from deploy import package, requirements
from deploy.errors import KitError
from deploy.settings import Settings

RELEASE_RE = re.compile(r"^\d{8}-\d{6}\.\d{3}-[0-9a-f]{7}$")
GIT_ENV = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t", "GIT_CONFIG_GLOBAL": "/dev/null",
           "GIT_CONFIG_SYSTEM": "/dev/null", "PATH": "/usr/bin:/bin:/usr/local/bin", "HOME": "/nonexistent"}


def names(data: bytes) -> set[str]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return {m.name.removeprefix("./") for m in tar.getmembers() if m.isfile()}


def write_app(d, requirements="Flask==3.1.3\ngunicorn==27.0.1\n"):
    d.mkdir(parents=True, exist_ok=True)
    (d / "serve.py").write_text("app = None\n")
    (d / "gunicorn.conf.py").write_text("workers = 2\n")
    (d / "requirements.txt").write_text(requirements)
    (d / "static").mkdir(exist_ok=True)
    (d / "static" / "site.css").write_text("body{}\n")
    # junk that must never ship
    for junk in ("__pycache__/serve.cpython-311.pyc", ".venv/bin/python", "venv/x", ".env",
                 "REVISION", "node_modules/a/index.js", "x.egg-info/PKG-INFO", ".pytest_cache/v",
                 "old.pyc", ".serve.py.swp"):
        p = d / junk
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text("junk\n")
    return d


APP_FILES = {"serve.py", "gunicorn.conf.py", "requirements.txt", "static/site.css"}


def git(cwd, *args):
    return subprocess.run(["git", *args], cwd=cwd, env=GIT_ENV, check=True, capture_output=True,
                          text=True).stdout.strip()


@pytest.fixture
def git_env(monkeypatch):
    for k, v in GIT_ENV.items():
        monkeypatch.setenv(k, v)
    for k in ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE"):
        monkeypatch.delenv(k, raising=False)


@pytest.mark.parametrize("name, junk", [
    ("serve.py", False), ("static/app.js", False), ("env/x.py", False), (".env.example", False),
    (".git/config", True), ("pkg/__pycache__/m.pyc", True), (".venv/bin/pip", True),
    ("venv/lib", True), ("a.pyc", True), ("b.pyo", True), ("x.egg-info/PKG-INFO", True),
    ("node_modules/x", True), (".DS_Store", True), ("REVISION", True), (".env", False),
    ("sub/.serve.py.swp", True), (".mypy_cache/x", True),
])
def test_is_junk(name, junk):
    assert package.is_junk(name) is junk


def test_release_id_format_is_utc_stamp_millis_and_rev():
    now = calendar.timegm((2026, 11, 26, 23, 15, 0)) + 0.5
    assert package.release_id("abc1234", now) == "20261126-231500.500-abc1234"
    assert RELEASE_RE.match(package.release_id("abc1234"))


def test_release_ids_sort_in_time_order():
    base = calendar.timegm((2026, 1, 2, 3, 4, 5))
    ids = [package.release_id("fffffff", base + 0.25), package.release_id("0000000", base + 0.75),
           package.release_id("aaaaaaa", base + 10.5)]
    assert sorted(ids) == ids


def test_requirements_hash_follows_requirements_and_python():
    h = requirements.requirements_hash(b"gunicorn==27.0.1\n", "python3")
    assert re.fullmatch(r"[0-9a-f]{12}", h)
    assert h == requirements.requirements_hash(b"gunicorn==27.0.1\n", "python3")
    assert h != requirements.requirements_hash(b"gunicorn==27.0.2\n", "python3")
    assert h != requirements.requirements_hash(b"gunicorn==27.0.1\n", "python3.12")


def test_pack_dir_excludes_junk_and_hashes_content(tmp_path):
    app = write_app(tmp_path / "app")
    data, rev, note = package.pack_dir(app)
    assert names(data) == APP_FILES
    assert re.fullmatch(r"[0-9a-f]{7}", rev)
    assert note == "left out as likely secrets (set them with fab env.set): .env"
    assert package.pack_dir(app)[1] == rev                      # same content, same rev
    (app / "__pycache__" / "other.pyc").write_text("more junk")
    assert package.pack_dir(app)[1] == rev                      # junk does not count
    (app / "serve.py").write_text("app = 1\n")
    assert package.pack_dir(app)[1] != rev                      # content does


SECRETS = [".env.production", ".envrc", "instance/config.py", "instance/app.db", "id_rsa",
           "deploy/id_ed25519", "certs/server.key", "certs/server.pem", ".netrc", ".aws/credentials",
           "conf/.pypirc"]


@pytest.mark.parametrize("name", SECRETS)
def test_is_secret(name):
    assert package.is_secret(name)


@pytest.mark.parametrize("name", ["serve.py", "static/env.js", "environment.py", "keys.py",
                                  "templates/instance.html", "id_rsa.pub", "docs/pem.md"])
def test_is_not_secret(name):
    assert not package.is_secret(name)


def test_secrets_never_ship_and_the_note_names_them(tmp_path, git_env):
    import subprocess

    app = write_app(tmp_path / "app")
    for name in SECRETS:
        (app / name).parent.mkdir(parents=True, exist_ok=True)
        (app / name).write_text("s3cret\n")
    data, _, note = package.pack_dir(app)
    assert names(data) == APP_FILES
    assert note.startswith("left out as likely secrets") and "instance/config.py" not in note
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    subprocess.run(["git", "-C", str(tmp_path), "add", "-f", "."], check=True)
    subprocess.run(["git", "-C", str(tmp_path), "commit", "-qm", "x"], check=True)
    data, _, note = package.pack_git(app)
    assert not any(package.is_secret(n) for n in names(data)) and "left out" in note


def test_pack_dir_skips_symlinks(tmp_path):
    app = write_app(tmp_path / "app")
    (app / "link.py").symlink_to("/etc/passwd")
    assert "link.py" not in names(package.pack_dir(app)[0])


def test_pack_git_ships_the_committed_tree_of_app_dir_only(tmp_path, git_env):
    repo = tmp_path / "repo"
    app = write_app(repo / "app")
    (repo / "README").write_text("outside app_dir\n")
    git(repo, "init", "-q")
    git(repo, "add", "-A", "-f")   # even junk that was committed by mistake is filtered out
    git(repo, "commit", "-qm", "one")
    head = git(repo, "rev-parse", "--short=7", "HEAD")
    data, rev, note = package.pack_git(app)
    assert rev == head and note == "left out as likely secrets (set them with fab env.set): .env"
    assert names(data) == APP_FILES
    (app / "serve.py").write_text("app = 'uncommitted'\n")
    (app / "new.py").write_text("x = 1\n")
    data, rev, note = package.pack_git(app)
    assert rev == head
    assert note.startswith(f"uncommitted changes in app/ are not included (deploying commit {head}); ")
    assert package.read_member(data, "serve.py") == b"app = None\n"
    assert "new.py" not in names(data)


def test_pack_git_falls_back_to_the_directory_when_app_dir_is_not_committed(tmp_path, git_env):
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "other").write_text("x\n")
    git(repo, "init", "-q")
    git(repo, "add", "other")
    git(repo, "commit", "-qm", "one")
    app = write_app(repo / "app")
    assert package.pack_git(app) is None
    assert package.pack_git(write_app(tmp_path / "not-a-repo")) is None


def test_build_names_the_release_after_the_commit(tmp_path, git_env):
    repo = tmp_path / "repo"
    write_app(repo)
    git(repo, "init", "-q")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "one")
    s = Settings(app_dir=str(repo))
    now = calendar.timegm((2026, 11, 26, 23, 15, 0)) + 0.5
    pkg = package.build(s, now=now)
    head = git(repo, "rev-parse", "--short=7", "HEAD")
    assert pkg.release == f"20261126-231500.500-{head}" and pkg.rev == head
    assert pkg.req_hash == requirements.requirements_hash((repo / "requirements.txt").read_bytes(), "python3")
    assert names(pkg.data) == APP_FILES | {".flasksample/requirements.txt", ".flasksample/gunicorn.conf.py",
                                      ".flasksample/handover.py", ".flasksample/keeper.py", ".flasksample/preflight.py",
                                      ".flasksample/zygote.py"}


def test_build_outside_git_and_requirements_change_the_venv_hash(tmp_path):
    app = write_app(tmp_path / "app")
    first = package.build(Settings(app_dir=str(app)))
    assert RELEASE_RE.match(first.release)
    (app / "requirements.txt").write_text("Flask==3.1.3\ngunicorn==27.0.1\nrequests==2.32.0\n")
    second = package.build(Settings(app_dir=str(app)))
    assert second.req_hash != first.req_hash and second.rev != first.rev
    (app / "serve.py").write_text("app = 2\n")
    assert package.build(Settings(app_dir=str(app))).req_hash == second.req_hash


def test_build_adds_gunicorn_when_the_app_does_not_list_it(tmp_path):
    app = write_app(tmp_path / "app", requirements="Flask==3.1.3\n")
    pkg = package.build(Settings(app_dir=str(app)))
    pinned = package.read_member(pkg.data, ".flasksample/requirements.txt").decode()
    assert pinned.splitlines()[0] == "Flask==3.1.3" and "gunicorn==27.0.1" in pinned.splitlines()[1]
    assert package.read_member(pkg.data, ".flasksample/gunicorn.conf.py").startswith(b'"""gunicorn')


def test_build_refuses_a_release_without_its_requirements(tmp_path):
    app = write_app(tmp_path / "app")
    (app / "requirements.txt").unlink()
    with pytest.raises(KitError, match="requirements.txt is not in the release"):
        package.build(Settings(app_dir=str(app)))
