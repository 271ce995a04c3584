"""Several hosts in one run: `fab -H a,b …` (or deploy@a,deploy@b) sets up and deploys both, all or nothing."""
import json


def release_of(http, host):
    return json.loads(http(host, "/healthz")[1])["release"]


def test_two_hosts_deploy_together_and_a_failing_host_switches_none(sandbox_hosts, fab, http, app_copy):
    a, b = sandbox_hosts(2)
    group = ["-f", str(app_copy.config), "-S", a.ssh_config, "-H", f"{a.name},{b.name}"]

    # Fabric's user@host form is the same group as the ssh_config aliases: one release id
    with_users = group[:-1] + [f"deploy@{a.name},deploy@{b.name}"]
    out = fab(*with_users, "setup", "deploy")
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.count("setup done") == 2
    assert out.stdout.count("deploying release") == 1 and f"[{a.name},{b.name}] deploying" in out.stdout
    first = release_of(http, a)
    assert release_of(http, b) == first and http(b, "/") == (200, "Hello World!")

    # b's health check path does not exist: b fails its preflight, so a must not switch either.
    app_copy.settings(hosts={b.name: {"health_path": "/missing"}})
    app_copy.say("Hello v2!")
    out = fab(*group, "deploy")
    assert out.returncode == 1 and f"{b.name}: prepare failed" in out.stderr
    assert release_of(http, a) == first and http(a, "/") == (200, "Hello World!")
    assert http(b, "/") == (200, "Hello World!")

    app_copy.settings()
    out = fab(*group, "deploy")
    assert out.returncode == 0, out.stdout + out.stderr
    assert http(a, "/") == http(b, "/") == (200, "Hello v2!")
    assert release_of(http, a) == release_of(http, b) != first


def test_rolling_switch_rolls_back_hosts_already_switched(sandbox_hosts, fab, http, app_copy):
    """switch_batch: 1 switches a, then b; b fails its health gate after the switch only (its
    preflight passes), so b goes back by itself and the kit switches a back too."""
    a, b = sandbox_hosts(2)
    group = ["-f", str(app_copy.config), "-S", a.ssh_config, "-H", f"{a.name},{b.name}"]
    assert fab(*group, "setup", "deploy").returncode == 0
    first = release_of(http, a)

    app_copy.settings(switch_batch=1, health_timeout=5, health_path="/healthz")
    app_copy.patch("        return jsonify(",
                   "        import socket, sys\n"
                   f"        if socket.gethostname() == {b.name!r} and not any('preflight' in x for x in sys.argv):\n"
                   "            return 'sick', 500\n"
                   "        return jsonify(")
    out = fab(*group, "deploy")
    assert out.returncode == 1, out.stdout + out.stderr
    assert f"{b.name}: switch failed" in out.stderr
    assert "back to their previous release" in out.stdout
    assert release_of(http, a) == first and release_of(http, b) == first
