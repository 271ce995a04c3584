"""HTTPS, the pure parts: local certificate checks, settings rules, the nginx TLS site, the
setup plans for files and acme (first issuance, idempotence, new pair), fab status lines."""
from __future__ import annotations

import base64
import hashlib

import pytest

from deploy import templates, tls, tlsserver
from deploy.errors import KitError
from deploy.steps import ordered
from deploy.steps.site import site_content
from deploy.tasks.setup import apply_script, plan
from tests.certs import CA

NAME = "app.example.org"


@pytest.fixture
def pair(tmp_path):
    """(cert path, key path) of a valid pair for NAME, plus a second CA's key and an old pair."""
    ca = CA()
    ca.issue([NAME]).write(tmp_path / "cert.pem", tmp_path / "key.pem")
    CA().issue([NAME]).write(tmp_path / "other.pem", tmp_path / "other.key")
    ca.issue([NAME], days=1, start_days=-3).write(tmp_path / "old.pem", tmp_path / "old.key")
    return tmp_path


def files(make, d, cert="cert.pem", key="key.pem", **kw):
    return make(tls="files", domains=[NAME], tls_cert=str(d / cert), tls_key=str(d / key), **kw)


def acme(make, **kw):
    return make(**{"tls": "acme", "domains": [NAME], "acme_email": "ops@example.org", **kw})


def test_a_good_pair_gives_its_names(pair):
    info = tls.check_pair(pair / "cert.pem", pair / "key.pem")
    assert info.names == [NAME] and "flasksample test CA" in info.issuer


@pytest.mark.parametrize("cert, key, expected", [
    ("cert.pem", "other.key", "does not match the certificate"),
    ("old.pem", "old.key", "expired on"),
    ("nope.pem", "key.pem", "does not exist"),
    ("cert.pem", "nope.key", "does not exist"),
    ("key.pem", "key.pem", "holds no PEM certificate"),
    ("cert.pem", "cert.pem", "is not a PEM private key"),
])
def test_bad_pairs_are_one_line_errors(make, pair, cert, key, expected):
    with pytest.raises(KitError) as e:
        files(make, pair, cert, key)
    assert expected in str(e.value) and "\n" not in str(e.value) and " — fix: " in str(e.value)


@pytest.mark.parametrize("raw, expected", [
    ({"tls": "on"}, "setting 'tls' is 'on'"),
    ({"tls": "acme", "acme_email": "a@example.org"}, "has '_'"),
    ({"tls": "acme", "acme_email": "a@example.org", "domains": ["*.example.org"]}, "'*.example.org'"),
    ({"tls": "acme", "acme_email": "a@example.org", "domains": ["localhost"]}, "'localhost'"),
    ({"tls": "acme", "domains": [NAME]}, "'acme_email' is not set"),
    ({"acme_server": "http://insecure.example/dir"}, "acme_server"),
    ({"tls": "files", "domains": [NAME]}, "'tls_cert' is not set"),
    ({"hsts": -1}, "'hsts' is -1"),
])
def test_bad_tls_settings(make, raw, expected):
    with pytest.raises(KitError) as e:
        make(**raw)
    assert expected in str(e.value)


def test_acme_server_shorthands(make):
    assert tls.acme_directory("staging") == "https://acme-staging-v02.api.letsencrypt.org/directory"
    assert tls.acme_directory("letsencrypt") == "https://acme-v02.api.letsencrypt.org/directory"
    assert tls.acme_directory("https://ca.internal:14000/dir") == "https://ca.internal:14000/dir"


def test_advice_when_a_real_domain_has_no_tls(make):
    assert "tls: acme" in tls.advice(make(domains=[NAME]))
    assert tls.advice(make()) is None and tls.advice(acme(make)) is None


# -- nginx ---------------------------------------------------------------------------------------

def test_tls_site_follows_the_intermediate_profile_with_http2_and_redirect(make, pair):
    out = site_content(files(make, pair, hsts=31536000), ready=True)
    for line in ["listen 443 ssl http2;", "ssl_protocols TLSv1.2 TLSv1.3;",
                 "ssl_certificate /etc/nginx/tls/flasksample/fullchain.pem;",
                 "ssl_certificate_key /etc/nginx/tls/flasksample/privkey.pem;",
                 "ssl_session_tickets off;", "ssl_prefer_server_ciphers off;",
                 "return 301 https://$host$request_uri;",
                 'add_header Strict-Transport-Security "max-age=31536000" always;']:
        assert line in [l.strip() for l in out.splitlines()], line
    assert "TLSv1.1" not in out and "acme-challenge" not in out  # files: no challenge location


def test_acme_site_before_and_after_the_certificate(make):
    s = acme(make)
    before = site_content(s, ready=False)
    assert "listen 443" not in before and "location ^~ /.well-known/acme-challenge/" in before
    assert "proxy_pass http://flasksample_gunicorn;" in before  # still serves the app on 80
    after = site_content(s, ready=True)
    port80 = after.split("listen 443")[0]
    assert "acme-challenge" in port80 and "return 301 https://" in port80
    assert "proxy_pass" not in port80 and "Strict-Transport-Security" not in after


def test_tls_off_renders_the_plain_site(s):
    out = templates.render("nginx/site.conf.j2", s)
    assert "ssl" not in out and "acme" not in out and "listen 80;" in out


# -- setup plans ---------------------------------------------------------------------------------

def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def changed(changes) -> dict:
    return {ch.step: ch for ch in changes if ch.changed}


def test_files_mode_sends_the_pair_on_stdin_never_in_the_script(make, pair):
    s = files(make, pair)
    changes = plan(s, {})
    step = changed(changes)["tls-files"]
    key_pem = (pair / "key.pem").read_bytes()
    script = apply_script(changes)
    assert b"PRIVATE KEY" not in script.encode() and key_pem.decode() not in script
    assert script.index("exec 3<&0 </dev/null") < script.index("::step")  # before apt & co
    cert_b64, key_b64 = step.stdin.splitlines()
    assert base64.b64decode(key_b64) == key_pem and key_b64 not in script
    assert any("umask 077" in l and "chmod 600" in l for l in step.lines)
    assert any("nginx -t" in l and "previous pair was put back" in l for l in step.lines)


def test_files_mode_unchanged_when_the_server_has_the_same_pair(make, pair):
    s = files(make, pair)
    facts = {f"sha:{tlsserver.cert_path(s)}": sha((pair / "cert.pem").read_bytes()),
             f"sha:{tlsserver.key_path(s)}": sha((pair / "key.pem").read_bytes())}
    assert "tls-files" not in changed(plan(s, facts))
    facts[f"sha:{tlsserver.key_path(s)}"] = "0" * 64
    assert "tls-files" in changed(plan(s, facts))


def test_setup_check_diffs_the_tls_files_but_never_the_key(make, pair, tmp_path):
    """--check shows a unified diff of each file the TLS steps write: the certificate, not the
    private key (a secret is never read back or printed)."""
    s = files(make, pair)
    step = changed(plan(s, {}))["tls-files"]
    assert step.files == [(tlsserver.cert_path(s), (pair / "cert.pem").read_text())]
    assert not any(tlsserver.key_path(s) == path for path, _ in step.files)
    (tmp_path / "ca.pem").write_bytes(CA().pem)
    s = acme(make, acme_ca_bundle=str(tmp_path / "ca.pem"))
    written = {path: content for ch in plan(s, {}) for path, content in ch.files}
    assert written[tlsserver.hook_path(s)] == tlsserver.RELOAD_HOOK
    assert written[tlsserver.ca_bundle_path(s)] == (tmp_path / "ca.pem").read_text()
    assert written[tlsserver.certbot_dropin(s)] == tlsserver.certbot_dropin_content(s)
    site = changed(plan(s, {}))["tls-certificate"].files  # the TLS site, once certbot has one
    assert site == [("/etc/nginx/sites-available/flasksample.conf", site_content(s, ready=True))]


def converged_acme(s) -> dict:
    cert = tlsserver.cert_path(s)
    return {f"exists:{cert}": "yes", f"certnames:{cert}": NAME,
            f"dir:{tlsserver.webroot(s)}": "root:root:755",
            f"sha:{tlsserver.hook_path(s)}": sha(tlsserver.RELOAD_HOOK.encode()),
            "enabled:certbot.timer": "enabled"}


def test_acme_first_run_issues_through_the_webroot_then_switches_the_site(make):
    s = acme(make)
    steps = [st.name for st in ordered(s)]
    assert steps.index("tls-files") < steps.index("nginx-site") < steps.index("tls-certificate")
    issue = changed(plan(s, {}))["tls-certificate"]
    text = "\n".join(issue.lines)
    assert "certbot certonly -n --agree-tos" in text and "--webroot -w /var/www/flasksample-acme" in text
    assert f"-d {NAME}" in text and "--cert-name flasksample" in text
    assert text.index("certbot certonly") < text.index("nginx -t")  # the TLS site only after it
    assert "'::error %s%s — %s\\n' 'no certificate for" in text


def test_acme_second_run_never_reissues(make):
    s = acme(make)
    facts = converged_acme(s)
    assert "tls-certificate" not in changed(plan(s, facts))
    assert "tls-files" not in changed(plan(s, facts))
    facts[f"certnames:{tlsserver.cert_path(s)}"] = "old.example.org"  # names changed: reissue
    lines = changed(plan(s, facts))["tls-certificate"].lines
    assert "systemctl reload nginx" in lines  # the TLS site stays; only the certificate changes
    assert not any("sites-available/flasksample.conf.kit-new" in l for l in lines)


def test_a_failed_issuance_puts_back_the_site_this_run_replaced(make, run_bash):
    s = acme(make)
    issue = changed(plan(s, {}))["tls-certificate"].lines[0]
    assert 'if [ -n "${kit_site_saved:-}" ]; then rm -f /etc/nginx/sites-available/flasksample.conf;' \
        in issue and issue.index("kit_site_saved") < issue.index("no certificate for")


def test_a_failed_issuance_is_one_line_with_the_acme_servers_reason(make, run_bash):
    from deploy.shell import script
    s = acme(make)
    stub = ('certbot() { echo "Detail: DNS problem: NXDOMAIN looking up A"; return 1; }\n'
            'nginx() { :; }\nsystemctl() { echo "systemctl $*"; }\nkit_site_saved=1\n')
    out = run_bash(script(stub, tlsserver.issue_lines(s, "echo restored")))
    assert out.returncode == 1
    assert out.stdout.splitlines()[-3:] == [
        "restored", "systemctl reload nginx",
        f"::error no certificate for {NAME}: Detail: DNS problem: NXDOMAIN looking up A — make every "
        "name in domains resolve to this host with port 80 reachable from the ACME server, then run "
        "fab setup again (the previous site keeps serving)"]
    renew = run_bash(script(tlsserver.renew_script_lines(s)))
    assert (renew.returncode, renew.stdout) == (1, "::error no certificate from certbot yet — run fab setup first\n")


def test_acme_ca_bundle_reaches_certbot_and_its_timer(make, tmp_path):
    (tmp_path / "ca.pem").write_bytes(CA().pem)
    s = acme(make, acme_server="https://10.231.255.1:14000/dir", acme_ca_bundle=str(tmp_path / "ca.pem"))
    ch = changed(plan(s, {}))
    assert "REQUESTS_CA_BUNDLE=/etc/letsencrypt/flasksample-acme-ca.pem certbot certonly" in \
        "\n".join(ch["tls-certificate"].lines)
    assert "REQUESTS_CA_BUNDLE" in tlsserver.certbot_dropin_content(s)
    assert "certbot.service trusts it" in ch["tls-files"].summary


def test_status_and_renew_scripts(make, run_bash):
    s = acme(make)
    from deploy.service import status_script
    from deploy.shell import script
    assert "issuer:" in status_script(s) and "expires:" in status_script(s)
    renew = script(tlsserver.renew_script_lines(s))
    assert "certbot renew -n --force-renewal" in renew and "--cert-name flasksample" in renew
    assert run_bash(f"bash -n <<'EOF'\n{renew}\nEOF").returncode == 0
