"""Several web hosts behind a load balancer (3 web + 1 lb, sharing the hosts across events):
load goes to the balancer the whole time and no request may fail while hosts are added,
deployed batch by batch, rolled back, restarted, killed, removed and powered off."""
import json
import time

from conftest import load_on

from deploy.balancer import names_in


def release_of(http, host):
    return json.loads(http(host, "/healthz")[1])["release"]


def lb_lists(ssh, lb):
    conf = ssh(lb, "root").run("cat /etc/nginx/sites-available/flasksample.conf", hide=True).stdout
    return names_in(conf.splitlines()), conf


def test_rolling_deploys_behind_the_balancer_drop_no_request(sandbox_hosts, fab, http, ssh, app_copy):
    w1, w2, w3, lb = sandbox_hosts(4)
    names = {h.name: h for h in (w1, w2, w3)}
    cfg = ["-f", str(app_copy.config), "-S", w1.ssh_config]

    def run(*tasks, ok=True):
        out = fab(*cfg, *tasks)
        assert (out.returncode == 0) == ok, out.stdout + out.stderr
        return out

    # two web hosts (named with and without a user) and the balancer, from servers: (no -H)
    app_copy.settings(servers={"web": [f"deploy@{w1.name}", w2.name], "lb": [lb.name]})
    run("setup", "deploy")
    assert sorted(lb_lists(ssh, lb)[0]) == sorted([w1.name, w2.name])
    first = release_of(http, lb)
    # setup --check covers the balancer: a hand edit there is a diff and exit 1, left as it is
    assert "setup --check: no change" in run("setup", "--check").stdout
    site = "/etc/nginx/sites-available/flasksample.conf"
    ssh(lb, "root").run(f"sed -i 's/keepalive 32;/keepalive 8;/' {site}", hide=True)
    drift = run("setup", "--check", ok=False)
    assert f"[{lb.name}]" in drift.stdout and f"--- {site} (on the host)" in drift.stdout, drift.stdout
    assert "-    keepalive 8;" in drift.stdout and "+    keepalive 32;" in drift.stdout
    assert lb.name in drift.stderr and "keepalive 8;" in lb_lists(ssh, lb)[1]
    run("setup")
    assert "keepalive 32;" in lb_lists(ssh, lb)[1]

    events = []
    with load_on(lb, keep_body=True) as load:
        def event(name, fn):
            t = load.now()
            result = fn()
            events.append((name, round(t, 1), round(load.now(), 1)))
            time.sleep(1.0)
            return result

        web2 = {"web": [f"deploy@{w1.name}", w2.name], "lb": [lb.name]}
        web3 = {"web": [f"deploy@{w1.name}", w2.name, f"root@{w3.name}"], "lb": [lb.name]}
        # a rolling deploy, one host at a time, each taken out of the balancer first
        app_copy.settings(servers=web2, switch_batch=1)
        app_copy.say("Hello v2!")
        out = event("rolling deploy", lambda: run("deploy"))
        assert out.stdout.count("deploying release") == 1
        assert out.stdout.count("out of the balancer, in-flight requests done") == 2
        assert release_of(http, w1) == release_of(http, w2) != first

        # -H with user@ names: one group, one rollback
        out = event("rollback", lambda: run("-H", f"deploy@{w1.name},deploy@{w2.name}", "rollback"))
        assert release_of(http, w1) == release_of(http, w2) == first

        # add a web host (as root@): set up, then deployed batch by batch, then in the balancer
        app_copy.settings(servers=web3, switch_batch=1)
        app_copy.say("Hello v3!")
        out = event("add w3 + rolling deploy", lambda: run("setup", "deploy"))
        assert out.stdout.count("deploying release") == 1
        assert out.stdout.count("out of the balancer, in-flight requests done") == 2  # w3 was not in
        third = release_of(http, w1)
        assert {release_of(http, h) for h in (w1, w2, w3)} == {third}
        assert sorted(lb_lists(ssh, lb)[0]) == sorted(names)

        event("systemctl restart on w1",
              lambda: ssh(w1, "root").run("systemctl restart flasksample", hide=True))
        event("kill -9 gunicorn master on w2", lambda: ssh(w2, "root").run(
            "kill -9 $(systemctl show -p MainPID --value flasksample)", hide=True))

        # w3 fails its health gate only after its switch: every host ends on the release it had,
        # every host back in the balancer
        app_copy.settings(servers=web3, switch_batch=1, health_timeout=5, health_path="/healthz")
        app_copy.patch("        return jsonify(",
                       "        import socket, sys\n"
                       f"        if socket.gethostname() == {w3.name!r} and not any('preflight' in x for x in sys.argv):\n"
                       "            return 'sick', 500\n"
                       "        return jsonify(")
        out = event("deploy failing on w3", lambda: run("deploy", ok=False))
        assert f"{w3.name}: switch failed" in out.stderr
        assert {release_of(http, h) for h in (w1, w2, w3)} == {third}
        listed, conf = lb_lists(ssh, lb)
        assert sorted(listed) == sorted(names) and " down;" not in conf

        out = run("status")
        assert "RELEASE" in out.stdout and "drift" not in out.stdout and lb.name in out.stdout
        out = run("logs", "-n", "2", "--since", "1 hour ago")
        assert all(f"[{n}]" in out.stdout for n in names), out.stdout

        # remove w3 from servers: setup takes it out of the balancer
        app_copy.settings(servers=web2)
        event("remove w3", lambda: run("setup"))
        assert sorted(lb_lists(ssh, lb)[0]) == sorted([w1.name, w2.name])

        event("power off w2", lambda: ssh(w2, "root").run("systemctl poweroff", hide=True, warn=True))
        time.sleep(3)
    summary = load.summary()
    print("events:", events, "load:", summary)
    assert summary["sent"] > 200
    assert load.failures == [], f"{len(load.failures)} failed: {load.failures[:5]} events={events}"
