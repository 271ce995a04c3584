"""The sandbox refuses bad input and unfit machines with one-line KitErrors, before any change."""
import pytest

from deploy.errors import KitError
from deploy.sandbox import manager


@pytest.fixture
def fake_root(monkeypatch, tmp_path):
    monkeypatch.setenv("FLASKSAMPLE_SANDBOX_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("FLASKSAMPLE_IMAGE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(manager.sys, "platform", "linux")
    monkeypatch.setattr(manager.os, "geteuid", lambda: 0)
    monkeypatch.setattr(manager.shutil, "which", lambda tool: f"/usr/bin/{tool}")
    monkeypatch.setattr(manager.machine, "cgroup_roots", lambda: [tmp_path])

    def must_not_run(*a, **kw):
        raise AssertionError("a unit test reached a real sandbox action")

    # whatever happens, a unit test never builds an image, runs ip/iptables or boots a host
    monkeypatch.setattr(manager.image, "ensure_rootfs", must_not_run)
    monkeypatch.setattr(manager.network, "run", must_not_run)
    monkeypatch.setattr(manager.machine, "launch", must_not_run)
    monkeypatch.setattr(manager.machine, "destroy", must_not_run)
    return tmp_path


def one_line(err: KitError) -> str:
    text = str(err)
    assert "\n" not in text
    return text


def test_not_root(monkeypatch, fake_root):
    monkeypatch.setattr(manager.os, "geteuid", lambda: 1000)
    with pytest.raises(KitError) as e:
        manager.up("fs1")
    assert "root" in one_line(e.value)
    assert not (fake_root / "state").exists()


def test_not_linux(monkeypatch, fake_root):
    monkeypatch.setattr(manager.sys, "platform", "darwin")
    with pytest.raises(KitError, match="Linux"):
        manager.down()


def test_missing_tools_name_the_packages(monkeypatch, fake_root):
    monkeypatch.setattr(manager.shutil, "which",
                        lambda tool: None if tool in ("systemd-nspawn", "mmdebstrap") else "/x")
    with pytest.raises(KitError) as e:
        manager.up()
    text = one_line(e.value)
    assert "systemd-nspawn" in text and "apt-get install systemd-container mmdebstrap" in text
    assert "make deps" in text


@pytest.mark.parametrize("name", ["Bad!", "1abc", "x" * 17])
def test_bad_name(fake_root, name):
    with pytest.raises(KitError) as e:
        manager.up(name)
    assert "bad sandbox name" in one_line(e.value)
    assert not (fake_root / "state").exists()


def test_name_already_exists(fake_root):
    (fake_root / "state" / "hosts" / "fs1").mkdir(parents=True)
    (fake_root / "state" / "hosts" / "fs1" / "host.json").write_text('{"name": "fs1", "index": 1}')
    with pytest.raises(KitError, match="fs1 already exists"):
        manager.up("fs1")


def test_down_of_unknown_name(fake_root):
    with pytest.raises(KitError) as e:
        manager.down("nope")
    assert "no sandbox host named nope" in one_line(e.value)


def test_down_with_nothing_running(fake_root):
    assert manager.down() == []
    assert manager.list_hosts() == []


def test_unknown_release_is_refused_before_anything(fake_root):
    with pytest.raises(KitError) as e:
        manager.up("fs1", release="buster")
    assert "unknown sandbox release 'buster'" in one_line(e.value)
    assert not (fake_root / "state").exists()
