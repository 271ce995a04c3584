"""HTTPS end to end (issue 11): certificates from a real ACME server (pebble, HTTP-01 through the
kit's nginx) and from files signed by a CA made here; verified from outside like
`curl --cacert ROOT --resolve NAME:443:ADDRESS`; renewal, deploy and rollback under HTTPS load."""
import hashlib
import socket
import ssl
import subprocess
import time

import pytest

from conftest import e2e_required, http_get, load_on
from test_bad_input import one_line_error
from tests.certs import CA
from tests.e2e import pebble as pebble_mod

pytestmark = pytest.mark.xdist_group("https")  # one pebble for the session's HTTPS tests
MANAGERS = ["systemd", "supervisor"]


@pytest.fixture(scope="session")
def pebble(tmp_path_factory, sandbox_registry):
    """pebble + pebble-challtestsrv on this machine for the whole session."""
    missing = pebble_mod.missing()
    if missing:
        message = f"missing {', '.join(missing)}: run `make deps` (Debian package pebble)"
        pytest.fail(message) if e2e_required() else pytest.skip(message)
    server = pebble_mod.Pebble(tmp_path_factory.mktemp("pebble")).start()
    yield server
    server.stop()


def curl(host, name, ca_file, path="/", *extra) -> subprocess.CompletedProcess:
    return subprocess.run(["curl", "-sS", "--max-time", "10", "--cacert", str(ca_file), "--resolve",
                           f"{name}:443:{host.address}", *extra, f"https://{name}{path}"],
                          capture_output=True, text=True)


def http_head(host, name, path="/") -> str:
    return subprocess.run(["curl", "-sS", "-o", "/dev/null", "--max-time", "10", "-w",
                           "%{http_code} %{redirect_url}", "-H", f"Host: {name}",
                           f"http://{host.address}{path}"], capture_output=True, text=True).stdout


def served_cert(host, name) -> str:
    """SHA-256 of the certificate nginx presents for `name` (not verified: that is curl's job)."""
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    with socket.create_connection((host.address, 443), timeout=5) as sock:
        with ctx.wrap_socket(sock, server_hostname=name) as tls_sock:
            return hashlib.sha256(tls_sock.getpeercert(binary_form=True)).hexdigest()


def no_failures(load) -> None:
    assert load.summary()["sent"] > 50, load.summary()
    assert load.failures == [], f"{len(load.failures)} failed: {load.failures[:5]}"


@pytest.mark.parametrize("manager", MANAGERS)
def test_acme_certificate_redirect_renewal_deploy_rollback(manager, pebble, sandbox_host, kit,
                                                           ssh, app_copy, tmp_path):
    host, name = sandbox_host, f"{sandbox_host.name}.test"
    pebble.add_a(name, host.address)
    base = {"process_manager": manager, "health_timeout": 6}
    acme = {**base, "tls": "acme", "acme_email": "ops@example.org",
            "acme_server": pebble.directory, "acme_ca_bundle": str(pebble.ca_file)}
    tasks = ["setup", "deploy"]
    if manager == "systemd":  # the same for both managers: once is enough
        app_copy.settings(**base)
        kit(host, *tasks, config=app_copy.config)
        tasks = ["setup"]
        # A name that does not resolve to the host fails validation: one line; the site that
        # served before is put back and serves.
        site = "cat /etc/nginx/sites-enabled/flasksample.conf"
        before = ssh(host, "root").run(site, hide=True).stdout
        app_copy.settings(domains=[f"elsewhere.{name}"], **acme)
        line = one_line_error(kit(host, "setup", config=app_copy.config, check=False))
        assert f"no certificate for elsewhere.{name}" in line, line
        assert http_get(host) == (200, "Hello World!")
        assert ssh(host, "root").run(site, hide=True).stdout == before

    # Real HTTP-01: pebble fetches the challenge from the host's port 80.
    app_copy.settings(domains=[name], **acme)
    out = kit(host, *tasks, config=app_copy.config).stdout
    assert "tls-certificate  changed" in out, out
    root = tmp_path / "pebble-root.pem"
    root.write_bytes(pebble.root_pem())
    answer = curl(host, name, root)
    assert (answer.returncode, answer.stdout) == (0, "Hello World!"), answer.stderr
    assert http_head(host, name, "/x?y=1") == f"301 https://{name}/x?y=1"
    assert http_head(host, name, "/.well-known/acme-challenge/none").startswith("404")
    first = served_cert(host, name)

    again = kit(host, "setup", config=app_copy.config).stdout
    assert "setup done: no change" in again, again
    assert served_cert(host, name) == first
    status = kit(host, "status", config=app_copy.config).stdout
    assert f"tls: acme, names {name}; issuer CN=Pebble Intermediate" in status, status
    assert "; expires " in status, status

    with load_on(host, https=(name, root)) as load:
        time.sleep(0.5)
        renewed = kit(host, "tls.renew", config=app_copy.config).stdout
        time.sleep(0.5)
        app_copy.say("Hello TLS!")
        kit(host, "deploy", config=app_copy.config)
        time.sleep(0.5)
        kit(host, "rollback", config=app_copy.config)
        time.sleep(0.5)
    no_failures(load)
    assert "renewed" in renewed, renewed
    assert served_cert(host, name) != first  # the reload hook put the new certificate in use
    assert curl(host, name, root).stdout == "Hello World!"


@pytest.mark.both_releases  # the TLS site on Debian 13's nginx too
def test_files_mode_with_own_ca(sandbox_host, kit, ssh, app_copy, tmp_path):
    host, name = sandbox_host, f"{sandbox_host.name}.test"
    ca = CA("flasksample e2e own CA")
    ca_file = tmp_path / "ca.pem"
    ca_file.write_bytes(ca.pem)
    first, second = ca.issue([name]), ca.issue([name])
    first.write(tmp_path / "a.pem", tmp_path / "a.key")
    second.write(tmp_path / "b.pem", tmp_path / "b.key")
    app_copy.settings(tls="files", domains=[name], tls_cert=str(tmp_path / "a.pem"),
                      tls_key=str(tmp_path / "a.key"), hsts=300)
    kit(host, "setup", "deploy", config=app_copy.config)

    answer = curl(host, name, ca_file, "/", "-D", "-")
    assert answer.returncode == 0 and answer.stdout.endswith("Hello World!"), answer.stderr
    assert "strict-transport-security: max-age=300" in answer.stdout.lower()
    assert served_cert(host, name) == first.fingerprint
    root = ssh(host, "root")
    key = "/etc/nginx/tls/flasksample/privkey.pem"
    assert root.run(f"stat -c '%U:%G %a' {key}", hide=True).stdout.strip() == "root:root 600"
    assert root.run("grep -rl 'PRIVATE KEY' /srv/flasksample /tmp /run/flasksample-kit",
                    hide=True, warn=True).stdout == ""

    # A new pair replaces the old one with a graceful reload: no failed HTTPS request.
    app_copy.settings(tls="files", domains=[name], tls_cert=str(tmp_path / "b.pem"),
                      tls_key=str(tmp_path / "b.key"), hsts=300)
    # setup --check first: the certificate's diff, never the key; exit 1, nothing changed
    drift = kit(host, "setup", "--check", config=app_copy.config, check=False)
    assert drift.returncode == 1 and "tls-files        would change" in drift.stdout, drift.stdout
    assert "--- /etc/nginx/tls/flasksample/fullchain.pem (on the host)" in drift.stdout
    assert "PRIVATE KEY" not in drift.stdout + drift.stderr
    assert served_cert(host, name) == first.fingerprint
    with load_on(host, https=(name, ca_file)) as load:
        time.sleep(0.5)
        out = kit(host, "setup", config=app_copy.config).stdout
        time.sleep(0.5)
    no_failures(load)
    assert "tls-files        changed" in out, out
    assert served_cert(host, name) == second.fingerprint
    assert "setup done: no change" in kit(host, "setup", config=app_copy.config).stdout


def _bad_input_cases(tmp_path):
    ca, other = CA(), CA()
    good = ca.issue(["app.example.org"])
    good.write(tmp_path / "good.pem", tmp_path / "good.key")
    other.issue(["app.example.org"]).write(tmp_path / "other.pem", tmp_path / "other.key")
    ca.issue(["app.example.org"], days=1, start_days=-3).write(tmp_path / "old.pem", tmp_path / "old.key")
    files = "tls: files\n  domains: [app.example.org]\n"
    return {
        "acme-any-name": ("tls: acme\n  acme_email: a@example.org\n", "setting 'domains' has '_'"),
        "acme-no-email": ("tls: acme\n  domains: [app.example.org]\n", "setting 'acme_email' is not set"),
        "missing-cert": (files + f"  tls_cert: {tmp_path}/nope.pem\n  tls_key: {tmp_path}/good.key\n",
                         "does not exist"),
        "key-mismatch": (files + f"  tls_cert: {tmp_path}/good.pem\n  tls_key: {tmp_path}/other.key\n",
                         "does not match the certificate"),
        "expired": (files + f"  tls_cert: {tmp_path}/old.pem\n  tls_key: {tmp_path}/old.key\n", "expired on"),
    }


@pytest.mark.parametrize("case", ["acme-any-name", "acme-no-email", "missing-cert", "key-mismatch", "expired"])
def test_bad_tls_input_is_one_line_before_connecting(case, fab, tmp_path):
    yaml_text, expected = _bad_input_cases(tmp_path)[case]
    config = tmp_path / "fabric.yaml"
    config.write_text("flasksample:\n  " + yaml_text)
    # 127.0.0.1:1 has no sshd: the settings error must come first.
    assert expected in one_line_error(fab("-f", str(config), "-H", "127.0.0.1:1", "setup"))
