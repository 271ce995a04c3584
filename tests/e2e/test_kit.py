"""The kit on a real host: setup → deploy → operate, as root and as a sudo user (issue #3)."""
import json

import pytest

from conftest import wait_for

APP = "flasksample"


OPERATE = {
    "systemd": {"restart": f"systemctl restart {APP}", "reload": f"systemctl reload {APP}",
                "pid": f"systemctl show -p MainPID --value {APP}"},
    "supervisor": {"restart": f"supervisorctl restart {APP}", "reload": f"supervisorctl signal HUP {APP}",
                   "pid": f"supervisorctl pid {APP}"},
}


@pytest.mark.both_releases
@pytest.mark.parametrize("user,manager", [("root", "systemd"), ("deploy", "systemd"),
                                          ("deploy", "supervisor")])
def test_setup_deploy_and_operate(sandbox_host, kit, ssh, http, app_copy, user, manager):
    host = sandbox_host
    root = ssh(host, "root")
    ops = OPERATE[manager]
    app_copy.settings(process_manager=manager)

    first = kit(host, "setup", user=user, config=app_copy.config)
    assert "packages         changed" in first.stdout
    assert "nginx-site       changed" in first.stdout

    deployed = kit(host, "deploy", user=user, config=app_copy.config)
    assert "building venv" not in deployed.stdout  # setup built it, while apt installed nginx
    assert "preflight: cold (the service runs no zygote)" in deployed.stdout
    assert http(host, "/") == (200, "Hello World!")
    v1 = json.loads(http(host, "/healthz")[1])["release"]

    again = kit(host, "setup", user=user, config=app_copy.config)
    assert "setup done: no change" in again.stdout
    assert " changed " not in again.stdout

    app_copy.say("Hello v2!")
    out = kit(host, "deploy", user=user, config=app_copy.config)
    # a code-only deploy: loaded by a child of the running service's zygote (deploy/kit/zygote.py)
    assert "preflight: warm (forked by the running service's zygote)" in out.stdout
    assert http(host, "/") == (200, "Hello v2!")
    v2 = json.loads(http(host, "/healthz")[1])["release"]
    assert v2 != v1

    kit(host, "rollback", user=user, config=app_copy.config)
    assert http(host, "/") == (200, "Hello World!")
    assert json.loads(http(host, "/healthz")[1])["release"] == v1

    root.run(ops["restart"], hide=True)
    wait_for("the app to answer", lambda: http(host, "/") == (200, "Hello World!"), 20, 0.2)
    root.run(ops["reload"], hide=True)
    assert http(host, "/") == (200, "Hello World!")

    logs = kit(host, "logs", "-n", "200", user=user, config=app_copy.config)
    assert '"GET / HTTP/1.0" 200' in logs.stdout
    web = kit(host, "logs", "--web", "-n", "50", user=user, config=app_copy.config)
    assert '"GET / HTTP/1.1" 200' in web.stdout
    # --since: the journal, or the time stamps of the plain files (supervisor's log, nginx's)
    since = kit(host, "logs", "--since", "1 hour ago", user=user, config=app_copy.config)
    assert '"GET / HTTP/1.0" 200' in since.stdout
    web = kit(host, "logs", "--web", "--since", "1 hour ago", user=user, config=app_copy.config)
    assert '"GET / HTTP/1.1" 200' in web.stdout
    status = kit(host, "status", user=user, config=app_copy.config)
    # fab status is one table now: HOST ROLE RELEASE PROCESS HEALTH …
    row = next(l.split() for l in status.stdout.splitlines() if l.startswith(f"{host.name} "))
    assert row[1:5] == ["web", v1, "running", "200"], status.stdout
    releases = kit(host, "releases", user=user, config=app_copy.config)
    assert f"* {v1} (current)" in releases.stdout and v2 in releases.stdout

    pid = wait_for("a master pid", lambda: root.run(ops["pid"], hide=True).stdout.strip().strip("0") and
                   root.run(ops["pid"], hide=True).stdout.strip())
    root.run(f"kill -9 {pid}", hide=True)

    def restarted():
        new = root.run(ops["pid"], hide=True, warn=True).stdout.strip()
        return new not in ("0", "", pid) and http(host, "/") == (200, "Hello World!")

    wait_for("a restarted master", restarted, 20, 0.2)
    if manager == "systemd":
        assert "NRestarts=1" in root.run(f"systemctl show -p NRestarts {APP}", hide=True).stdout


def test_switching_process_manager_leaves_exactly_one_gunicorn(sandbox_host, kit, ssh, http, app_copy):
    host, root = sandbox_host, ssh(sandbox_host, "root")

    def masters():
        procs = {}
        for line in root.run("ps -eo pid=,ppid=,args=", hide=True).stdout.splitlines():
            pid, ppid, args = line.split(None, 2)
            if "gunicorn --chdir" in args:
                procs[pid] = ppid
        return len([pid for pid, ppid in procs.items() if ppid not in procs])

    kit(host, "setup", "deploy", config=app_copy.config)
    for manager, gone in (("supervisor", f"/etc/systemd/system/{APP}.service"),
                          ("systemd", f"/etc/supervisor/conf.d/{APP}.conf")):
        app_copy.settings(process_manager=manager)
        out = kit(host, "setup", config=app_copy.config)
        assert f"remove {'systemd' if manager == 'supervisor' else 'supervisor'} config" in out.stdout
        wait_for("the app to answer", lambda: http(host, "/") == (200, "Hello World!"), 20, 0.2)
        assert root.run(f"test -e {gone}", hide=True, warn=True).exited != 0
        assert masters() == 1
        assert "no change" in kit(host, "setup", config=app_copy.config).stdout


@pytest.mark.both_releases
def test_host_layout_and_hardening(sandbox_host, kit, ssh, http, app_copy):
    host = sandbox_host
    app_copy.settings(shared_dirs=["uploads"])
    kit(host, "setup", "deploy", config=app_copy.config)
    root = ssh(host, "root")

    def sh(cmd, **kw):
        return root.run(cmd, hide=True, warn=True, **kw)

    assert sh(f"systemctl is-enabled {APP}.socket {APP}.service nginx").stdout.split() == ["enabled"] * 3
    assert sh(f"systemctl is-active {APP}.socket {APP}.service nginx").stdout.split() == ["active"] * 3
    assert sh(f"getent passwd {APP}").stdout.strip().endswith(":/usr/sbin/nologin")
    assert sh(f"runuser -u {APP} -- touch /srv/{APP}/current/x").exited != 0
    assert sh(f"runuser -u {APP} -- touch /srv/{APP}/current/.venv/x").exited != 0
    assert sh("test -e /etc/nginx/sites-enabled/default").exited != 0
    assert sh("nginx -T 2>/dev/null | grep -c 'server_tokens off'").stdout.strip() != "0"
    assert "Server: nginx\r" in sh("curl -sI http://127.0.0.1/").stdout
    assert sh("systemctl show -p Type --value flasksample").stdout.strip() == "notify"
    score = sh(f"systemd-analyze security {APP}.service --no-pager | tail -n1").stdout
    assert "Overall exposure level" in score
    assert float(score.split(":")[1].split()[0]) <= 2.0, score  # on Debian 12 and 13 alike
    # Inside the service's own sandbox (its mount namespace, as its user): the shared dir is
    # writable and survives a deploy; the code is not writable.
    as_service = (f"nsenter -t $(systemctl show -p MainPID --value {APP}) -m "
                  f"-S $(id -u {APP}) -G $(id -g {APP}) --")
    assert sh(f"{as_service} touch /srv/{APP}/current/uploads/kept").exited == 0
    assert sh(f"{as_service} touch /srv/{APP}/current/not-here").exited != 0
    app_copy.say("Hello again!")
    kit(host, "deploy", config=app_copy.config)
    assert sh(f"test -f /srv/{APP}/current/uploads/kept").exited == 0
    assert http(host, "/") == (200, "Hello again!")


def test_setup_rewrites_a_changed_unit_and_keeps_serving(sandbox_host, kit, ssh, http, app_copy):
    host = sandbox_host
    kit(host, "setup", "deploy", config=app_copy.config)
    root = ssh(host, "root")
    root.run(f"echo '# hand edit' >> /etc/systemd/system/{APP}.service", hide=True)
    out = kit(host, "setup", config=app_copy.config)
    assert "systemd-units    changed" in out.stdout
    assert "# hand edit" not in root.run(f"cat /etc/systemd/system/{APP}.service", hide=True).stdout
    assert http(host, "/") == (200, "Hello World!")
    assert "no change" in kit(host, "setup", config=app_copy.config).stdout


def test_broken_nginx_change_is_refused_and_nginx_keeps_serving(sandbox_host, kit, ssh, http, app_copy):
    host = sandbox_host
    kit(host, "setup", "deploy", config=app_copy.config)
    root = ssh(host, "root")
    # A conflicting upstream elsewhere makes the kit's next site fail `nginx -t`.
    root.run(f"echo 'upstream {APP}_gunicorn {{ server 127.0.0.1:9; }}' > /etc/nginx/conf.d/conflict.conf",
             hide=True)
    app_copy.settings(domains=["example.test"])
    out = kit(host, "setup", config=app_copy.config, check=False)
    assert out.returncode == 1
    assert "nginx -t rejected the new site; the previous config was put back" in out.stderr
    assert "Traceback" not in out.stderr
    assert "server_name _;" in root.run(f"cat /etc/nginx/sites-available/{APP}.conf", hide=True).stdout
    assert http(host, "/") == (200, "Hello World!")
