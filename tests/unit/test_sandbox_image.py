"""The base image recipe: cache key and mmdebstrap command."""
import copy

from deploy.sandbox import image, paths


def test_cache_key_is_stable_and_follows_the_recipe():
    r = image.recipe()
    assert image.cache_key(r) == image.cache_key(copy.deepcopy(r)) == image.cache_key()
    changed = copy.deepcopy(r)
    changed["include"].append("vim")
    assert image.cache_key(changed) != image.cache_key(r)
    changed = copy.deepcopy(r)
    changed["predownload"].remove("curl")
    assert image.cache_key(changed) != image.cache_key(r)


def test_tarball_name_carries_the_key():
    assert image.tarball_name("abc123") == "debian-bookworm-sandbox-abc123.tar.zst"


def test_image_is_a_fresh_vm_without_the_kits_packages():
    for pkg in ("systemd", "openssh-server", "sudo", "python3", "ca-certificates"):
        assert pkg in image.INCLUDE
    for pkg in ("nginx", "supervisor", "python3-venv"):
        assert pkg not in image.INCLUDE
        assert pkg in image.PREDOWNLOAD


def test_mmdebstrap_keeps_apt_lists_and_cache_and_downloads_only():
    argv = image.mmdebstrap_argv("/tmp/x.tar.zst")
    assert argv[:2] == ["mmdebstrap", "--variant=minbase"]
    assert "--skip=cleanup/apt/lists" in argv and "--skip=cleanup/apt/cache" in argv
    assert any(a.startswith("--include=") and "openssh-server" in a for a in argv)
    hooks = [a for a in argv if a.startswith("--customize-hook=")]
    assert any("--download-only" in h and "nginx" in h for h in hooks)
    assert any("apt-daily.timer" in h for h in hooks)
    assert any("ssh_host_" in h for h in hooks)  # no baked-in host keys
    i = argv.index("bookworm")
    assert argv[i + 1] == "/tmp/x.tar.zst"
    assert argv[i + 2] == "deb http://deb.debian.org/debian bookworm main"


def test_unpack_keeps_numeric_owners():
    argv = image.unpack_argv("/c/img.tar.zst", "/d")
    assert "--numeric-owner" in argv and argv[-2:] == ["-C", "/d"]


def test_locations_follow_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("FLASKSAMPLE_SANDBOX_DIR", str(tmp_path / "s"))
    monkeypatch.setenv("FLASKSAMPLE_IMAGE_CACHE", str(tmp_path / "c"))
    assert paths.state_dir() == tmp_path / "s"
    assert paths.image_cache_dir() == tmp_path / "c"
    assert paths.host_dir("fs1") == tmp_path / "s" / "hosts" / "fs1"
    monkeypatch.delenv("FLASKSAMPLE_SANDBOX_DIR")
    monkeypatch.delenv("FLASKSAMPLE_IMAGE_CACHE")
    assert str(paths.state_dir()) == "/var/lib/flasksample/sandbox"
    assert str(paths.image_cache_dir()) == "/var/cache/flasksample"


def test_each_release_has_its_own_recipe_key_and_tarball():
    bookworm, trixie = image.recipe(), image.recipe("trixie")
    assert bookworm == image.recipe("bookworm") and image.DEFAULT_RELEASE == "bookworm"
    assert trixie["suite"] == "trixie"
    assert "deb http://deb.debian.org/debian-security trixie-security main" in trixie["mirrors"]
    assert image.cache_key(trixie) != image.cache_key(bookworm)
    # the same packages are pre-downloaded on both
    assert trixie["predownload"] == bookworm["predownload"] and trixie["hooks"] == bookworm["hooks"]
    assert image.tarball_name("k", "trixie") == "debian-trixie-sandbox-k.tar.zst"
    argv = image.mmdebstrap_argv("/tmp/t.tar.zst", trixie)
    assert argv[argv.index("trixie") + 1] == "/tmp/t.tar.zst"


def test_unknown_release_is_a_one_line_error_naming_the_known_ones():
    import pytest

    from deploy.errors import KitError

    with pytest.raises(KitError) as e:
        image.recipe("sid")
    assert "unknown sandbox release 'sid'" in str(e.value)
    assert "bookworm" in str(e.value) and "trixie" in str(e.value)
