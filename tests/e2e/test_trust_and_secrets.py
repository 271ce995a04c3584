"""Issue #7 end to end: host keys are verified before anything is sent; secrets set with
`fab env.set` reach the app and nowhere else, and survive deploys and rollbacks."""
import base64
import io
import json
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid

import pytest

from conftest import REPO_ROOT, load_on
from deploy import knownhosts, package, settings

APP = "flasksample"


def run_fab(*args, home=None, stdin="", timeout=300):
    """The real CLI; stdin is a pipe (never a terminal), HOME optionally a private one."""
    env = dict(os.environ)
    if home:
        env["HOME"] = str(home)
    return subprocess.run([sys.executable, "-m", "fabric", *args], cwd=REPO_ROOT, env=env,
                          input=stdin, capture_output=True, text=True, timeout=timeout)


def one_line_error(result, *needles):
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    errors = [l for l in result.stderr.splitlines() if l.startswith("error: ")]
    assert len(errors) == 1, result.stderr
    for needle in needles:
        assert needle in errors[0], errors[0]
    return errors[0]


def sandbox_key(host) -> bytes:
    """The host key the sandbox recorded when it made the host."""
    for line in open(host.known_hosts):
        name, _, key = line.split()
        if name == host.address:
            return base64.b64decode(key)
    raise AssertionError("no sandbox known_hosts line")


def sandbox_fp(host) -> str:
    return knownhosts.fingerprint(sandbox_key(host))


def sh(conn, command: str) -> str:
    return conn.run(command, hide=True, warn=True).stdout.strip()


def logins(conn) -> int:
    return int(sh(conn, "sudo journalctl -u ssh --no-pager -o cat | grep -c 'Accepted publickey' || true"))


def rotate_host_key(conn) -> None:
    conn.run("sudo rm -f /etc/ssh/ssh_host_ed25519_key /etc/ssh/ssh_host_ed25519_key.pub && "
             "sudo ssh-keygen -q -t ed25519 -N '' -f /etc/ssh/ssh_host_ed25519_key && "
             "sudo systemctl restart ssh", hide=True)


def healthz(host) -> dict:
    with urllib.request.urlopen(f"http://{host.address}/healthz", timeout=5) as r:
        return json.loads(r.read())


def test_unknown_and_changed_host_keys_are_refused_until_trusted(sandbox_host, ssh, tmp_path):
    host = sandbox_host
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True, mode=0o700)
    # the user's own ~/.ssh/config names the host; ~/.ssh/known_hosts does not know it yet
    (home / ".ssh" / "config").write_text(
        f"Host web\n    HostName {host.address}\n    User {host.user}\n"
        f"    IdentityFile {host.key_path}\n    IdentitiesOnly yes\n")
    known_hosts = home / ".ssh" / "known_hosts"
    fp = sandbox_fp(host)
    conn = ssh(host)
    before = logins(conn)

    out = run_fab("-H", "web", "setup", "deploy", home=home)
    one_line_error(out, "web: unknown host key", fp, "fab -H web trust", "nothing was sent")
    assert sh(conn, "test -e /srv/flasksample && echo yes || echo no") == "no"
    assert logins(conn) == before, "the refused run must not have logged in"

    out = run_fab("-H", "web", "trust", "--fingerprint", "SHA256:" + "A" * 43, home=home)
    one_line_error(out, "not the expected", "nothing was recorded")
    out = run_fab("-H", "web", "trust", home=home)  # no terminal to confirm on
    one_line_error(out, "no terminal", "--fingerprint")
    assert not known_hosts.exists() or fp not in known_hosts.read_text()

    out = run_fab("-H", "web", "trust", "--fingerprint", fp, home=home)
    assert out.returncode == 0, out.stderr
    assert f"offers ED25519 key {fp}" in out.stdout and "recorded in" in out.stdout
    assert knownhosts.verdict(knownhosts.parse_known_hosts(known_hosts.read_text()), host.address,
                         sandbox_key(host)) == "known"
    assert run_fab("-H", "web", "status", home=home).returncode == 0

    # the server's key changes (re-installed, or someone in between)
    rotate_host_key(conn)
    new_fp = knownhosts.fingerprint(base64.b64decode(sh(conn, "cat /etc/ssh/ssh_host_ed25519_key.pub").split()[1]))
    before = logins(conn)
    out = run_fab("-H", "web", "setup", home=home)
    one_line_error(out, "CHANGED", fp, new_fp, f"fab -H web trust --fingerprint {new_fp}")
    assert logins(conn) == before
    out = run_fab("-H", "web", "trust", "--yes", home=home)  # --yes is for unknown keys only
    one_line_error(out, "CHANGED", "nothing was recorded", f"--fingerprint {new_fp}")
    out = run_fab("-H", "web", "trust", "--fingerprint", new_fp, home=home)
    assert out.returncode == 0 and "WARNING" in out.stdout and fp in out.stdout, out.stdout + out.stderr
    assert run_fab("-H", "web", "status", home=home).returncode == 0

    # the same sandbox name re-created: sandbox.up knows the new key and offers the fix
    assert run_fab("sandbox.down", "--name", host.name, home=home).returncode == 0
    up = run_fab("sandbox.up", "--name", host.name, home=home)
    assert up.returncode == 0, up.stderr
    address = re.search(r"is up at (\S+)", up.stdout).group(1)
    if address != host.address:
        return  # another host took the address meanwhile: nothing stale to offer a fix for
    fix = re.search(r"Fix: (fab -H \S+ trust --fingerprint \S+)", up.stdout)
    assert fix, up.stdout
    one_line_error(run_fab("-H", "web", "setup", home=home), "CHANGED")
    out = run_fab(*fix.group(1).split()[1:], home=home)
    assert out.returncode == 0, out.stderr
    assert run_fab("-H", "web", "status", home=home).returncode == 0


def test_secrets_reach_the_app_and_nowhere_else(sandbox_host, ssh, tmp_path):
    host = sandbox_host
    conn = ssh(host)
    token = uuid.uuid4().hex
    secret = f"kit-{token}-$HOME \"dq\" 'sq' \\b `id` end"
    config = tmp_path / "fabric.yaml"
    config.write_text("flasksample:\n  env:\n    GREETING: hello world\n"
                      "  health_allow: [10.231.0.0/16]\n")  # /healthz from this machine
    outputs = []

    def fab(*args, stdin=""):
        # strict host key checking against the sandbox's known_hosts: no prompt, no trust step
        result = run_fab("-f", str(config), "-S", host.ssh_config, "-H", host.name, *args, stdin=stdin)
        outputs.append(result.stdout + result.stderr)
        assert result.returncode == 0, result.stdout + result.stderr
        return result

    out = fab("setup", "deploy")
    assert "app-env" in out.stdout
    assert healthz(host)["secret_key_set"] is False
    assert sh(conn, "sudo cat /srv/flasksample/shared/env | grep GREETING") == 'GREETING="hello world"'

    # set it under load, watching the server's process list the whole time
    conn.run("sudo systemd-run -q --unit kit-psloop sh -c "
             "'for i in $(seq 300); do ps auxww; sleep 0.02; done > /root/ps.log 2>&1'", hide=True)
    with load_on(host) as load:
        time.sleep(0.5)
        out = fab("env.set", "SECRET_KEY", stdin=secret + "\n")
        time.sleep(0.5)
    assert "added SECRET_KEY" in out.stdout and "restarted" in out.stdout
    assert load.failures == [], load.failures[:5]
    assert healthz(host)["secret_key_set"] is True
    conn.run("while systemctl is-active -q kit-psloop; do sleep 0.5; done", hide=True, timeout=60)

    # the app got exactly the value (systemd parsed the quoting as sh would)
    worker = sh(conn, f"pgrep -P $(systemctl show -p MainPID --value {APP}) | head -n1")
    environ = conn.run(f"sudo cat /proc/{worker}/environ", hide=True).stdout.split("\0")
    assert f"SECRET_KEY={secret}" in environ and "GREETING=hello world" in environ
    assert sh(conn, "sudo stat -c '%U:%G %a' /srv/flasksample/shared/env") == f"root:{APP} 640"
    env_sha = sh(conn, "sudo sha256sum /srv/flasksample/shared/env")

    out = fab("env.list")
    assert "SECRET_KEY" in out.stdout and "********" in out.stdout and "GREETING" in out.stdout
    # refused values change nothing
    bad = run_fab("-S", host.ssh_config, "-H", host.name, "env.set", "OTHER", stdin="two\nlines\n")
    one_line_error(bad, "newline")
    outputs.append(bad.stdout + bad.stderr)

    # a deploy and a rollback keep it
    fab("deploy")
    assert healthz(host)["secret_key_set"] is True
    fab("rollback")
    assert healthz(host)["secret_key_set"] is True
    fab("status")
    fab("logs", "-n", "200")
    assert sh(conn, "sudo sha256sum /srv/flasksample/shared/env") == env_sha

    # nowhere else: task output, journal, ps, systemctl show, releases, venvs, logs, archive.
    # The searches read the token from a file sent by SFTP: on a command line, sudo would
    # log it to the journal itself.
    for text in outputs:
        assert token not in text
    conn.put(io.BytesIO(token.encode()), ".needle")

    def count(command):
        return sh(conn, f"{command} 2>/dev/null | grep -cFf ~/.needle || true")

    assert count("sudo cat /root/ps.log") == "0"
    assert int(sh(conn, "sudo cat /root/ps.log | wc -l")) > 100
    assert count("sudo journalctl --no-pager -o verbose") == "0"
    assert count("ps auxwwe") == "0"  # another user: not even ps's environment column shows it
    assert count(f"systemctl show {APP}.service {APP}.socket") == "0"
    hits = sh(conn, "sudo grep -rIlFf ~/.needle /srv /tmp /var/log /var/tmp /run /etc /root /home "
                    "--exclude=.needle 2>/dev/null || true")
    assert hits.splitlines() == ["/srv/flasksample/shared/env"], hits
    s = settings.load(run_fab_config(config))
    assert token.encode() not in package.build(s).data

    fab("env.unset", "SECRET_KEY")
    assert healthz(host)["secret_key_set"] is False
    conn.run("sudo rm -f /root/ps.log", hide=True)

    # X5: without health_allow, /healthz answers the host itself only
    config.write_text("flasksample:\n  env:\n    GREETING: hello world\n")
    fab("setup")
    with pytest.raises(urllib.error.HTTPError) as denied:
        healthz(host)
    assert denied.value.code == 403
    assert sh(conn, "curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1/healthz") == "200"
    with urllib.request.urlopen(f"http://{host.address}/", timeout=5) as r:
        assert r.status == 200


def run_fab_config(path):
    """A Fabric config with the project's fabric.yaml plus the test's runtime file."""
    from fabric import Config

    cfg = Config(runtime_path=str(path), project_location=str(REPO_ROOT))
    cfg.load_project()
    cfg.load_runtime()
    return cfg
