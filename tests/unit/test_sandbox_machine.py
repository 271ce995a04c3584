"""A sandbox host's own files and its nspawn command line."""
import pytest

from deploy.sandbox import machine


@pytest.mark.parametrize("name", ["fs1", "a", "web-2", "t123x4", "a234567890123456"])
def test_good_names(name):
    assert machine.valid_name(name)


@pytest.mark.parametrize("name", ["", "1fs", "Fs1", "fs_1", "a2345678901234567", "fs 1", "-a", "fs1\n"])
def test_bad_names(name):
    assert not machine.valid_name(name)


def test_next_free_name():
    assert machine.next_free_name(set()) == "fs1"
    assert machine.next_free_name({"fs1", "fs2", "web"}) == "fs3"
    assert machine.next_free_name({"fs2"}) == "fs1"


def test_hosts_file_names_localhost_and_the_host():
    text = machine.hosts_file("fs2")
    assert "127.0.0.1\tlocalhost\n" in text
    assert "127.0.1.1\tfs2\n" in text


def test_sshd_dropin_allows_keys_only():
    text = machine.sshd_dropin()
    assert "PasswordAuthentication no\n" in text
    assert "PermitRootLogin prohibit-password\n" in text
    assert "HostKey /etc/ssh/ssh_host_ed25519_key\n" in text


def test_sudoers_is_passwordless():
    assert machine.sudoers("deploy") == "deploy ALL=(ALL:ALL) NOPASSWD: ALL\n"


def test_machine_ids_are_fresh_32_hex():
    a, b = machine.new_machine_id(), machine.new_machine_id()
    assert a != b and len(a) == 32 and int(a, 16) >= 0


def test_nspawn_boots_with_keep_unit_in_the_hosts_netns():
    argv = machine.nspawn_argv("fs1", "/s/hosts/fs1/merged")
    assert argv[:2] == ["systemd-nspawn", "--boot"]
    for flag in ("--directory=/s/hosts/fs1/merged", "--machine=fs1", "--keep-unit",
                 "--register=no", "--network-namespace-path=/run/netns/sbx-fs1",
                 "--resolv-conf=copy-host", "--console=read-only"):
        assert flag in argv


def test_launcher_joins_each_cgroup_then_execs():
    argv = machine.launch_argv(["/cg/a/cgroup.procs", "/cg/b/cgroup.procs"], ["systemd-nspawn", "-b"])
    assert argv[:2] == ["sh", "-c"]
    assert argv[3:] == ["sh", "/cg/a/cgroup.procs", "/cg/b/cgroup.procs", "--", "systemd-nspawn", "-b"]


def test_launcher_script_really_runs(tmp_path):
    import subprocess
    a, b = tmp_path / "a", tmp_path / "b"
    argv = machine.launch_argv([str(a), str(b)], ["echo", "hello", "--", "x"])
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    assert out == "hello -- x\n"
    assert a.read_text().strip() == b.read_text().strip() and a.read_text().strip().isdigit()


def test_cgroup_dirs_are_per_host(tmp_path):
    dirs = machine.cgroup_dirs("fs1", [tmp_path / "systemd", tmp_path / "unified"])
    assert dirs == [tmp_path / "systemd" / "flasksample-sandbox-fs1",
                    tmp_path / "unified" / "flasksample-sandbox-fs1"]


def test_overlay_mount():
    assert machine.overlay_mount_argv("/l", "/u", "/w", "/m") == [
        "mount", "-t", "overlay", "overlay", "-o", "lowerdir=/l,upperdir=/u,workdir=/w", "/m"]


def test_inotify_instances_are_raised_never_lowered():
    assert machine.inotify_instances_needed(128) == machine.INOTIFY_INSTANCES_WANTED
    assert machine.inotify_instances_needed(machine.INOTIFY_INSTANCES_WANTED) is None
    assert machine.inotify_instances_needed(8192) is None
