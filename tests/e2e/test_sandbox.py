"""Sandbox hosts behave like fresh Debian 12 or 13 cloud VMs, are independent, and leave nothing behind."""
import os
import subprocess
from pathlib import Path

import pytest

from deploy.sandbox import down, list_hosts, network, paths


def run(conn, command: str) -> str:
    return conn.run(command, hide=True).stdout.strip()


def traces(host) -> list[str]:
    """What is left on the machine of `host` (empty when it is fully gone)."""
    left = []
    if os.path.exists(f"/run/netns/{network.netns_name(host.name)}"):
        left.append("netns")
    if os.path.exists(f"/sys/class/net/{network.veth_name(host.index)}"):
        left.append("veth")
    hdir = str(paths.host_dir(host.name))
    with open("/proc/self/mounts") as f:
        if any(line.split()[1].startswith(hdir) for line in f):
            left.append("mount")
    for root in ("/sys/fs/cgroup/systemd", "/sys/fs/cgroup/unified", "/sys/fs/cgroup"):
        if os.path.exists(f"{root}/flasksample-sandbox-{host.name}"):
            left.append(f"cgroup in {root}")
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if "systemd-nspawn" in cmdline and f"--machine={host.name}\0" in cmdline:
            left.append(f"nspawn pid {pid}")
    for path in (paths.host_dir(host.name), Path(f"/run/systemd/nspawn/propagate/{host.name}"),
                 Path(f"/var/lib/machines/.#{host.name}.lck")):
        if path.exists():
            left.append(str(path))
    if host.address in Path(host.known_hosts).read_text():
        left.append("known_hosts line")
    if f"Host {host.name}\n" in Path(host.ssh_config).read_text():
        left.append("ssh_config block")
    # A host that tests running beside this one started since may hold the freed index, and so
    # the same veth name and address: not a trace. (Read after the checks: its record is
    # written before its veth and its known_hosts line exist.)
    others = [h for h in list_hosts() if h.name != host.name]
    if any(h.index == host.index for h in others):
        left = [t for t in left if t != "veth"]
    if any(h.address == host.address for h in others):
        left = [t for t in left if t != "known_hosts line"]
    return left


def nat_rule_present() -> bool:
    out = subprocess.run(["iptables", "-w", "-t", "nat", "-S", "POSTROUTING"],
                         capture_output=True, text=True, check=True).stdout
    return network.RULE_COMMENT in out


# ---- from inside -----------------------------------------------------------------------------

DEBIAN_VERSION = {"bookworm": ("12.", "Python 3.11."), "trixie": ("13.", "Python 3.13.")}


@pytest.mark.both_releases
def test_boots_systemd_and_is_a_fresh_vm(sandbox_host, ssh, sandbox_release):
    conn = ssh(sandbox_host)
    assert sandbox_host.release == sandbox_release
    debian, python = DEBIAN_VERSION[sandbox_release]
    assert run(conn, "cat /etc/debian_version").startswith(debian)
    assert run(conn, "python3 --version").startswith(python)
    assert run(conn, "systemctl is-system-running") == "running"
    assert run(conn, "cat /proc/1/comm") == "systemd"
    assert run(conn, "hostname") == sandbox_host.name
    assert run(conn, "id -un") == "deploy"
    for pkg in ("nginx", "supervisor", "python3-venv"):
        status = conn.run(f"dpkg-query -W -f='${{Status}}' {pkg}", hide=True, warn=True).stdout
        assert "install ok installed" not in status, f"{pkg} must not be preinstalled"
    for pkg in ("openssh-server", "sudo", "python3", "ca-certificates"):
        assert run(conn, f"dpkg-query -W -f='${{Status}}' {pkg}") == "install ok installed"
    assert "masked" in run(conn, "systemctl is-enabled apt-daily.timer apt-daily-upgrade.timer || true")


@pytest.mark.both_releases
def test_deploy_user_installs_from_the_cached_debs(sandbox_host, ssh):
    conn = ssh(sandbox_host)
    out = conn.run("sudo -n apt-get install -y curl", hide=True).stdout
    assert "Get:" not in out, "curl and its deps should come from /var/cache/apt/archives"
    assert run(conn, "curl --version").startswith("curl ")
    # and the rest of what the kit installs is cached too
    sim = run(conn, "apt-get install -s -y nginx supervisor python3-venv python3-pip")
    assert "Inst nginx " in sim
    debs = run(conn, "ls /var/cache/apt/archives")
    for pkg in ("nginx_", "supervisor_", "python3-venv_", "python3-pip_"):
        assert pkg in debs


def test_apt_reaches_the_mirror_through_nat(sandbox_host, ssh):
    conn = ssh(sandbox_host)
    conn.run("sudo -n apt-get update -qq", hide=True)


def test_root_login_with_the_key_and_no_passwords(sandbox_host, ssh):
    root = ssh(sandbox_host, user="root")
    assert run(root, "id -u") == "0"
    config = run(root, "sshd -T")
    assert "passwordauthentication no" in config.splitlines()
    assert "permitrootlogin without-password" in config.splitlines()
    refused = subprocess.run(
        ["ssh", "-F", sandbox_host.ssh_config, "-o", "BatchMode=yes",
         "-o", "PubkeyAuthentication=no", "-o", "PreferredAuthentications=password,keyboard-interactive",
         sandbox_host.name, "true"], capture_output=True, text=True, timeout=30)
    assert refused.returncode == 255
    assert "Permission denied (publickey)" in refused.stderr


def test_ssh_config_works_with_strict_host_key_checking(sandbox_host):
    result = subprocess.run(
        ["ssh", "-F", sandbox_host.ssh_config, "-o", "BatchMode=yes", sandbox_host.name, "hostname"],
        capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == sandbox_host.name
    assert oct(os.stat(sandbox_host.key_path).st_mode & 0o777) == "0o600"


# ---- from outside ----------------------------------------------------------------------------

def test_two_hosts_are_independent_and_leave_nothing_behind(sandbox_hosts, ssh):
    a, b = sandbox_hosts(2)
    assert a.address != b.address and a.index != b.index
    assert {run(ssh(a), "hostname"), run(ssh(b), "hostname")} == {a.name, b.name}
    known = Path(a.known_hosts).read_text().splitlines()
    key_a = {" ".join(l.split()[1:]) for l in known if l.split()[0] == a.address}
    key_b = {" ".join(l.split()[1:]) for l in known if l.split()[0] == b.address}
    assert len(key_a) == len(key_b) == 1 and key_a != key_b
    assert run(ssh(a), "cat /etc/machine-id") != run(ssh(b), "cat /etc/machine-id")
    # each has its own port 22: the host key it presents is the one recorded for its address
    for host, key in ((a, key_a), (b, key_b)):
        scan = subprocess.run(["ssh-keyscan", "-t", "ed25519", host.address],
                              capture_output=True, text=True, timeout=30).stdout.split()
        assert " ".join(scan[1:3]) in key
    assert down(a.name) == [a.name]
    assert traces(a) == []
    assert run(ssh(b), "true") == ""  # the other one is unaffected
    down(b.name)
    assert traces(b) == []
    if not list_hosts() and not network.existing_netns():
        assert not nat_rule_present()


def test_fab_up_twice_gives_two_independent_hosts(fab, sandbox_registry):
    names = [sandbox_registry.new_name(), sandbox_registry.new_name()]
    try:
        for name in names:
            result = fab("sandbox.up", "--name", name)
            assert result.returncode == 0, result.stderr
            assert f"{name} is up at 10.231." in result.stdout
            assert "ssh -F " in result.stdout
        listing = fab("sandbox.list").stdout
        addresses = set()
        for name in names:
            line = next(l for l in listing.splitlines() if l.split()[0] == name)
            assert line.split()[2] == "running"
            addresses.add(line.split()[1])
        assert len(addresses) == 2
        config = str(paths.ssh_config_path())
        for name in names:
            out = subprocess.run(["ssh", "-F", config, "-o", "BatchMode=yes", name, "hostname"],
                                 capture_output=True, text=True, timeout=30)
            assert out.stdout.strip() == name, out.stderr
        for name in names:
            result = fab("sandbox.down", "--name", name)
            assert result.returncode == 0 and f"removed {name}" in result.stdout
    finally:
        sandbox_registry.remove(names)


@pytest.mark.parametrize("args, message", [
    (("sandbox.up", "--name", "Bad_Name!"), "bad sandbox name"),
    (("sandbox.up", "--name", "a2345678901234567"), "bad sandbox name"),
    (("sandbox.down", "--name", "nosuchhost"), "no sandbox host named nosuchhost"),
])
def test_bad_input_is_a_one_line_error(fab, args, message):
    result = fab(*args)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0]
    assert "Traceback" not in result.stderr


def test_four_hosts_start_in_parallel(sandbox_hosts, ssh):
    hosts = sandbox_hosts(4)
    assert len({h.address for h in hosts}) == 4 and len({h.name for h in hosts}) == 4
    for host in hosts:
        assert run(ssh(host), "systemctl is-system-running") == "running"
