"""Bad input gets one line naming the problem and the fix — no traceback, nothing changed."""
import pytest


def one_line_error(result) -> str:
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    lines = [l for l in result.stderr.splitlines() if l.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and " — fix: " in lines[0], result.stderr
    return lines[0]


@pytest.mark.parametrize("yaml_text, expected", [
    ("flasksample:\n  wokers: 3\n", "unknown setting 'wokers' in fabric.yaml — fix: did you mean 'workers'?"),
    ("flasksample:\n  workers: many\n", "setting 'workers' in fabric.yaml must be int, got 'many'"),
    ("flasksample:\n  process_manager: runit\n", "setting 'process_manager' in fabric.yaml is 'runit'"),
    ("flasksample:\n  wsgi: nothere:app\n", "names module 'nothere'"),
])
def test_bad_settings_are_refused_before_connecting(fab, tmp_path, yaml_text, expected):
    config = tmp_path / "fabric.yaml"
    config.write_text(yaml_text)
    # 127.0.0.1:1 has no sshd: the settings error must come first.
    assert expected in one_line_error(fab("-f", str(config), "-H", "127.0.0.1:1", "setup"))


def test_unreachable_host(fab):
    line = one_line_error(fab("-H", "127.0.0.1:1", "setup"))
    assert "cannot connect to 127.0.0.1:1" in line


def test_task_without_host(fab):
    assert "no hosts to work on" in one_line_error(fab("deploy"))


def test_refused_key_and_missing_sudo(sandbox_host, fab, ssh):
    host = sandbox_host
    line = one_line_error(fab("-S", host.ssh_config, "-H", f"nobody@{host.name}", "setup"))
    assert "SSH refused the key for user nobody" in line

    root = ssh(host, "root")
    root.run("useradd -m -s /bin/bash nosudo && install -d -o nosudo -m 700 ~nosudo/.ssh && "
             "cp ~deploy/.ssh/authorized_keys ~nosudo/.ssh/ && chown nosudo ~nosudo/.ssh/authorized_keys",
             hide=True)
    line = one_line_error(fab("-S", host.ssh_config, "-H", f"nosudo@{host.name}", "setup"))
    assert "nosudo cannot" in line and "sudo" in line
    assert root.run("test -e /srv/flasksample", hide=True, warn=True).exited != 0


def test_sudo_user_with_a_password(sandbox_host, fab, ssh, app_copy, tmp_path):
    """`--prompt-for-sudo-password` fills Fabric's sudo.password; a config file does the same."""
    host = sandbox_host
    ssh(host, "root").run(
        "useradd -m -s /bin/bash pw && echo 'pw:Secr3t-pw' | chpasswd && install -d -o pw -m 700 ~pw/.ssh"
        " && cp ~deploy/.ssh/authorized_keys ~pw/.ssh/ && chown pw ~pw/.ssh/authorized_keys"
        " && echo 'pw ALL=(ALL) ALL' > /etc/sudoers.d/pw", hide=True)
    good, bad = tmp_path / "good.yaml", tmp_path / "bad.yaml"
    good.write_text(app_copy.config.read_text() + "sudo:\n  password: Secr3t-pw\n")
    bad.write_text(app_copy.config.read_text() + "sudo:\n  password: nope\n")
    target = ["-S", host.ssh_config, "-H", f"pw@{host.name}"]
    line = one_line_error(fab("-f", str(bad), *target, "setup"))
    assert "sudo rejected the password for user pw" in line
    out = fab("-f", str(good), *target, "setup", "deploy", "status")
    assert out.returncode == 0, out.stdout + out.stderr
    assert " running " in out.stdout and "Secr3t-pw" not in out.stdout + out.stderr
    # X4: a password given for a NOPASSWD sudo user is not sent (it would reach the script)
    out = fab("-f", str(good), "-S", host.ssh_config, "-H", f"deploy@{host.name}", "deploy")
    assert out.returncode == 0, out.stdout + out.stderr


def test_deploy_before_setup_is_refused_and_touches_nothing(sandbox_host, fab, ssh, app_copy):
    host = sandbox_host
    line = one_line_error(fab("-f", str(app_copy.config), "-S", host.ssh_config, "-H", host.name, "deploy"))
    assert "is not set up for flasksample under systemd" in line and "run fab setup first" in line
    assert ssh(host, "root").run("test -e /srv/flasksample", hide=True, warn=True).exited != 0
