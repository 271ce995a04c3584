"""Adopting an app the kit has never seen: detection, requirements export, init, settings from
the environment, the one-off command line, processes: files, and what the wheel must carry."""
from __future__ import annotations

import fnmatch
import tomllib
from pathlib import Path

import pytest
from invoke import Config

from deploy import appcmd, detect, init, requirements, settings, templates
from deploy.errors import KitError
from deploy.managers import supervisor, systemd

REPO = Path(__file__).resolve().parents[2]
SHOP = REPO / "examples" / "shop"


def reader(d: Path):
    return lambda name: (d / name).read_bytes() if (d / name).is_file() else None


# -- detection and init ------------------------------------------------------------------------

def test_the_shop_example_is_detected_as_it_is():
    assert detect.wsgi_entry(SHOP) == "shop:create_app()"
    assert detect.static_folder(SHOP, "shop") == "shop/static"
    assert detect.requirements_source(SHOP) == "pyproject.toml"
    assert detect.project_name(SHOP) == "shop"


def test_the_bundled_app_is_detected_too():
    assert detect.wsgi_entry(REPO / "app") == "serve:app"
    assert detect.static_folder(REPO / "app", "serve") == "static"


def test_init_writes_a_config_that_validates_and_never_overwrites(tmp_path):
    import shutil

    import yaml

    app = tmp_path / "shop"
    shutil.copytree(SHOP, app)
    written = init.init(app)
    assert sorted(Path(p).name for p in written) == ["fabfile.py", "fabric.yaml"]
    assert (app / "fabfile.py").read_text().startswith("from deploy.fabfile import ns")
    raw = yaml.safe_load((app / "fabric.yaml").read_text())["flasksample"]
    s = settings.build(raw, project_dir=str(app))
    assert (s.wsgi, s.requirements, s.static_dir, s.local_app_dir) == \
        ("shop:create_app()", "pyproject.toml", "shop/static", app)
    with pytest.raises(KitError, match="already exist"):
        init.init(app)


# -- requirements ------------------------------------------------------------------------------

def test_uv_lock_is_exported_pinned_without_the_project_and_with_gunicorn():
    text, source = requirements.pinned(reader(SHOP), "")
    assert source == "uv.lock"
    lines = text.splitlines()
    assert "flask==3.1.3" in lines and "werkzeug==3.1.9" in lines
    assert "colorama==0.4.6 ; sys_platform == 'win32'" in lines
    assert not any(l.startswith("shop") for l in lines)
    assert lines[-1].startswith("gunicorn==27.0.1")


def test_pylock_and_requirements_txt(tmp_path):
    (tmp_path / "pyproject.toml").write_text("[project]\nname='x'\n")
    (tmp_path / "pylock.toml").write_text('lock-version = "1.0"\n[[packages]]\nname = "Flask"\n'
                                          'version = "3.1.3"\n[[packages]]\nname = "gunicorn"\nversion = "27.0.1"\n')
    text, source = requirements.pinned(reader(tmp_path), "")
    assert source == "pylock.toml" and text == "Flask==3.1.3\ngunicorn==27.0.1\n"
    (tmp_path / "requirements.txt").write_text("Flask==3.1.3\n")
    text, source = requirements.pinned(reader(tmp_path), "")
    assert source == "requirements.txt" and "gunicorn==27.0.1" in text


def test_a_pyproject_without_a_lock_is_refused(tmp_path):
    (tmp_path / "pyproject.toml").write_text("[project]\nname='x'\ndependencies=['flask']\n")
    with pytest.raises(KitError, match="has no lock file .* — fix: run `uv lock`"):
        requirements.pinned(reader(tmp_path), "")


# -- settings: environment, origins, relative paths ----------------------------------------

def test_env_overrides_win_and_are_validated(monkeypatch):
    monkeypatch.setenv("FABRIC_FLASKSAMPLE_WORKERS", "3")
    monkeypatch.setenv("FABRIC_FLASKSAMPLE_PROCESSES", "{worker: flask --app serve worker}")
    s = settings.load(Config(overrides={"flasksample": {"workers": 7}}))
    assert s.workers == 3 and s.processes == {"worker": "flask --app serve worker"}
    assert settings.origin(Config(), "workers") == "env FABRIC_FLASKSAMPLE_WORKERS"
    monkeypatch.setenv("FABRIC_FLASKSAMPLE_WORKERS", "many")
    with pytest.raises(KitError, match="environment variable FABRIC_FLASKSAMPLE_WORKERS must be int"):
        settings.load(Config())
    monkeypatch.delenv("FABRIC_FLASKSAMPLE_WORKERS")
    monkeypatch.setenv("FABRIC_FLASKSAMPLE_WORKRS", "3")
    with pytest.raises(KitError, match="did you mean 'workers'"):
        settings.load(Config())


def test_app_dir_resolves_against_the_config_file(tmp_path, monkeypatch):
    import shutil

    repo = tmp_path / "repo"
    shutil.copytree(SHOP, repo)
    (repo / "fabric.yaml").write_text("flasksample:\n  app_dir: .\n  wsgi: shop:create_app()\n")
    monkeypatch.chdir(tmp_path)
    config = Config(runtime_path=str(repo / "fabric.yaml"))
    config.load_runtime()
    s = settings.load(config)
    assert s.local_app_dir == repo and s.static_dir == "shop/static"
    assert settings.origin(config, "wsgi") == str(repo / "fabric.yaml")
    assert settings.origin(config, "workers") == "default"


def test_flasksample_finds_the_repository_config_upwards(tmp_path):
    from deploy.main import project_dir

    (tmp_path / "fabric.yaml").write_text("flasksample: {}\n")
    (tmp_path / "sub" / "deeper").mkdir(parents=True)
    assert project_dir(tmp_path / "sub" / "deeper") == tmp_path.resolve()


# -- commands and processes ------------------------------------------------------------------

def test_release_command_runs_sandboxed_as_the_app_user():
    s = settings.Settings(release_command="flask --app shop init-db", shared_dirs=["instance"])
    line = appcmd.command_line(s, "/srv/flasksample/releases/r1", s.release_command)
    assert line.startswith("systemd-run --quiet --collect --wait --pipe ")
    assert "--uid=flasksample" in line and "--property=ProtectSystem=strict" in line
    assert "--property=ReadWritePaths=-/srv/flasksample/shared/instance" in line
    assert "--property=EnvironmentFile=-/srv/flasksample/shared/env" in line
    assert "RemoveIPC" not in line
    assert line.endswith("-- /bin/sh -c 'flask --app shop init-db'")
    sup = appcmd.command_line(settings.Settings(process_manager="supervisor"), "/r", "echo 'x'")
    assert sup.startswith("(cd / && runuser -u flasksample -- /bin/sh -c ")


def test_every_sandbox_line_of_the_service_reaches_commands():
    s = settings.Settings(shared_dirs=["uploads"])
    service = templates.render("systemd/app.service.j2", s)
    for prop in appcmd.sandbox_properties(s):
        assert prop in service.splitlines()


def test_process_units_and_programs():
    s = settings.Settings(app_name="shop", processes={"worker": "flask --app shop worker --say '$5 100%'"})
    unit = next(f for f in systemd.files(s) if f.path == "/etc/systemd/system/shop-worker.service")
    assert 'ExecStart=/bin/sh -c "exec flask --app shop worker --say \'$$5 100%%\'"' in unit.content
    assert "ProtectSystem=strict" in unit.content and "User=shop" in unit.content
    assert unit.content.splitlines()[1].startswith("# flasksample process worker of shop:")
    conf = supervisor.files(s)[0].content
    assert "[program:shop-worker]" in conf and "[program:shop]" in conf
    import configparser

    parsed = configparser.RawConfigParser()
    parsed.read_string(conf)
    assert parsed.get("program:shop-worker", "directory") == "/srv/shop/current"


def test_dropped_process_units_are_removed_by_setup():
    s = settings.Settings(app_name="shop", processes={"worker": "w"})
    facts = {"procunits:shop": "shop-worker.service shop-old.service ",
             "enabled:shop-worker.service": "enabled", "active:shop-worker.service": "active",
             "exists:/srv/shop/current/.venv": "yes"}
    lines = systemd.process_lines(s, facts, set())
    assert "systemctl disable -q --now shop-old.service 2>/dev/null || true" in lines
    assert not any("shop-worker" in l for l in lines)
    assert systemd.process_lines(s, {**facts, "procunits:shop": "shop-worker.service"}, set()) == []


# -- the wheel ---------------------------------------------------------------------------------

def test_every_package_and_data_file_of_the_kit_is_in_the_wheel_config():
    cfg = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    packages = set(cfg["packages"])
    for init_py in (REPO / "deploy").rglob("__init__.py"):
        assert ".".join(init_py.parent.relative_to(REPO).parts) in packages
    patterns = cfg["package-data"]
    for f in (REPO / "deploy").rglob("*"):
        if f.is_dir() or f.suffix in (".py", ".pyc") and "kit" not in f.parts:
            continue
        if "__pycache__" in f.parts:
            continue
        pkg_dir = f.parent
        while not (pkg_dir / "__init__.py").is_file():
            pkg_dir = pkg_dir.parent
        pkg = ".".join(pkg_dir.relative_to(REPO).parts)
        rel = f.relative_to(pkg_dir).as_posix()
        globs = patterns.get(pkg, []) + patterns.get("*", [])
        assert any(fnmatch.fnmatch(rel, g) for g in globs), f"{f} is not package data"
    for d in cfg["package-dir"].values():
        assert (REPO / d).is_dir()
