"""deploy.balancer and the lb's setup step: the nginx config over the web hosts, draining."""
from deploy import balancer
from deploy.fleet import Member
from deploy.steps.balancer import BalancerSite, ordered

WEB = [Member("web1", "10.0.0.1"), Member("web2", "10.0.0.2"), Member("web3", "10.0.0.3")]


def test_upstream_lists_every_web_host_with_passive_health_checks_and_keepalive(s):
    conf = balancer.render(s, WEB)
    assert "server 10.0.0.1:80 max_fails=1 fail_timeout=10s;  # web1" in conf
    assert "keepalive 32;" in conf and 'proxy_set_header Connection "";' in conf
    assert "proxy_next_upstream error timeout http_502 http_503 http_504;" in conf
    assert " down" not in conf
    assert balancer.names_in(conf.splitlines()) == ["web1", "web2", "web3"]


def test_draining_marks_hosts_down_and_keeps_them_listed(s):
    conf = balancer.render(s, WEB, down={"web2"})
    assert "server 10.0.0.2:80 max_fails=1 fail_timeout=10s down;  # web2" in conf
    assert "server 10.0.0.1:80 max_fails=1 fail_timeout=10s;  # web1" in conf
    assert balancer.names_in(conf.splitlines()) == ["web1", "web2", "web3"]


def test_no_web_host_yet_answers_503(s):
    conf = balancer.render(s, [])
    assert "upstream" not in conf and "return 503;" in conf


def test_change_script_waits_for_the_old_workers_and_parses(s, syntax_ok):
    text = balancer.change_script(s, balancer.render(s, WEB), wait=30)
    assert "nginx -t" in text and "nginx_reload \"$NGINX_PID\" \"$WAIT\" exited" in text
    assert syntax_ok(text).returncode == 0
    assert syntax_ok(balancer.status_script(s)).returncode == 0


def test_change_program_returns_once_the_old_workers_are_gone(tmp_path):
    """lb_change.sh, with a stand-in nginx: a master whose worker (a program named nginx)
    ends a moment after the swap; the program returns only once it has, or warns after WAIT."""
    import re
    import shutil
    import subprocess
    from deploy.shell import program, remote_file

    worker = tmp_path / "nginx"
    shutil.copy(shutil.which("sleep"), worker)
    pidfile = tmp_path / "nginx.pid"
    (tmp_path / "systemctl").write_text("#!/bin/sh\n")  # nginx is active; its reload signals nothing
    (tmp_path / "systemctl").chmod(0o755)
    for wait, seconds in ((30, "0.3"), (0, "3")):
        master = subprocess.Popen(["bash", "-c", f"{worker} {seconds} & echo $! > {tmp_path}/w; wait"])
        try:
            while not (tmp_path / "w").exists() or not (tmp_path / "w").read_text().strip():
                pass
            pidfile.write_text(f"{master.pid}\n")
            text = program("lb_change", {"WAIT": wait, "NGINX_PID": str(pidfile)},
                           functions={"site_apply": ["echo applied"]})
            out = subprocess.run(["bash", "-c", f"PATH={tmp_path}:$PATH\n" + text], capture_output=True,
                                 text=True, timeout=20)
            worker_pid = int((tmp_path / "w").read_text())
            alive = subprocess.run(["kill", "-0", str(worker_pid)], capture_output=True).returncode == 0
            assert out.returncode == 0, out.stdout + out.stderr
            assert out.stdout.splitlines()[0] == "applied"
            if wait:
                assert not alive and len(out.stdout.splitlines()) == 1, out.stdout
            else:
                assert out.stdout.splitlines()[1] == \
                    "warning: an old nginx worker still has requests in flight after 0s"
        finally:
            master.kill()
            master.wait()
            (tmp_path / "w").unlink()
    used = set(re.findall(r"\$\{?([A-Z][A-Z0-9_]*)", remote_file("lb_change.sh")))
    assert used <= {"WAIT", "NGINX_PID"}, used


def test_lb_setup_step_writes_the_site_only_when_it_differs(s):
    from deploy.steps.units import sha256
    from deploy import layout

    site = BalancerSite(WEB)
    up_to_date = {f"sha:{layout.nginx_site(s)}": sha256(balancer.render(s, WEB)),
                  f"link:{layout.nginx_enabled(s)}": layout.nginx_site(s),
                  "active:nginx": "active", "enabled:nginx": "enabled"}
    assert not site.plan(s, up_to_date).changed
    assert BalancerSite(WEB[:2]).plan(s, up_to_date).changed  # a web host removed
    assert [st.name for st in ordered(s, WEB)] == ["packages", "lb-site"]
    assert ordered(s, WEB)[0].wanted(s) == ["nginx", "curl"]


def test_tls_terminates_on_the_balancer_with_the_https_building_blocks(make, tmp_path):
    import subprocess

    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "30",
                    "-subj", "/CN=example.org", "-addext", "subjectAltName=DNS:example.org",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    s = make(domains=["example.org"], tls="files", tls_cert=str(cert), tls_key=str(key))
    conf = balancer.render(s, WEB)
    assert "listen 443 ssl http2;" in conf and "ssl_certificate /etc/nginx/tls/" in conf
    assert "return 301 https://$host$request_uri;" in conf
    assert balancer.tls_ready(conf.splitlines())
    # a drain keeps TLS as the balancer has it now
    assert "listen 443" in balancer.render(s, WEB, {"web1"}, tls_ready=True)
    assert [st.name for st in ordered(s, WEB)] == ["packages", "tls-files", "lb-site"]
    assert "openssl" in ordered(s, WEB)[0].wanted(s)
