"""Setup steps for HTTPS (paths and shell in deploy/tlsserver.py, local checks in deploy/tls.py).

`TlsFiles` runs before the nginx site: `files` puts the certificate pair in place (sent on the
script's stdin, never on a command line; the key root-only 0600) behind an `nginx -t` gate with
the old pair restored on failure, then reloads nginx gracefully; `acme` prepares the challenge
webroot, certbot's reload hook and timer (and the CA bundle for a private ACME server).

`AcmeCertificate` runs after the site: the first time, the site serves the challenge on port 80
(no certificate yet, so it cannot listen on 443), certbot proves the domains through it, and
only then the TLS site replaces it, gated by `nginx -t` like every site change. An existing
certificate for the same names is never reissued or removed; a failed issuance stops setup
with one line while the site keeps serving as before.
"""
from __future__ import annotations

import base64
import hashlib

from deploy import facts, layout, tls, tlsserver
from deploy.shell import fail, q, scratch, write_file
from deploy.steps import Change
from deploy.steps.site import apply_lines, restore_line, site_content
from deploy.steps.units import sha256


def _file_sha(s, path: str) -> str:
    return hashlib.sha256(tls.local(s, path).read_bytes()).hexdigest()


def pair_lines(s) -> list[str]:
    """Read the pair from fd 3 (the script's stdin, see tasks/setup.py), swap it in, gate it."""
    cert, key = tlsserver.cert_path(s), tlsserver.key_path(s)
    directory = q(cert.rsplit("/", 1)[0])
    backup = scratch("tls-backup")
    qc, qk = q(cert), q(key)
    restore = f"cp -a {backup}/. {directory}/"
    return [
        f"install -d -m 755 /etc/nginx/tls && install -d -m 700 {directory}",
        f"rm -rf {backup} && install -d -m 700 {backup}",
        f"for f in {qc} {qk}; do if [ -e \"$f\" ]; then cp -a \"$f\" {backup}/; fi; done",
        "IFS= read -r -u 3 kit_tls_cert && IFS= read -r -u 3 kit_tls_key",
        f"printf %s \"$kit_tls_cert\" | base64 -d > {qc}.kit-new && chmod 644 {qc}.kit-new",
        f"(umask 077; printf %s \"$kit_tls_key\" | base64 -d > {qk}.kit-new) "
        f"&& chown root:root {qk}.kit-new && chmod 600 {qk}.kit-new",
        "unset kit_tls_cert kit_tls_key",
        f"mv -f {qc}.kit-new {qc} && mv -f {qk}.kit-new {qk}",
        f"if command -v nginx >/dev/null && ! nginx -t >{scratch('nginx-test.log')} 2>&1; then "
        f"{restore}; grep -E 'emerg|error' {scratch('nginx-test.log')} | head -n 3 || true; "
        + fail("nginx -t rejected the new certificate pair; the previous pair was put back",
               "check tls_cert/tls_key") + "; fi",
        f"rm -rf {backup}",
        "if systemctl is-active -q nginx; then systemctl reload nginx; fi",
    ]


def pair_payload(s) -> str:
    cert, key = tls.local(s, s.tls_cert).read_bytes(), tls.local(s, s.tls_key).read_bytes()
    return f"{base64.b64encode(cert).decode()}\n{base64.b64encode(key).decode()}\n"


class TlsFiles:
    """Before the site: the certificate pair (files) or certbot's surroundings (acme)."""

    name = "tls-files"

    def probes(self, s):
        if s.tls == "files":
            return [facts.sha(tlsserver.cert_path(s)), facts.sha(tlsserver.key_path(s))]
        if s.tls == "acme":
            return [facts.dir_(tlsserver.webroot(s)), facts.sha(tlsserver.hook_path(s)),
                    facts.sha(tlsserver.ca_bundle_path(s)), facts.sha(tlsserver.certbot_dropin(s)),
                    facts.enabled("certbot.timer")]
        return []

    def plan(self, s, f) -> Change:
        if s.tls == "files":
            if (f.get(f"sha:{tlsserver.cert_path(s)}") == _file_sha(s, s.tls_cert)
                    and f.get(f"sha:{tlsserver.key_path(s)}") == _file_sha(s, s.tls_key)):
                return Change(self.name)
            # --check diffs the certificate; the key is a secret: never read back or shown
            cert = (tlsserver.cert_path(s), tls.local(s, s.tls_cert).read_text(errors="replace"))
            return Change(self.name, f"install the certificate pair into "
                                     f"{tlsserver.cert_path(s).rsplit('/', 1)[0]} (key 0600)",
                          pair_lines(s), [cert], stdin=pair_payload(s))
        if s.tls != "acme":
            return Change(self.name)
        lines, what, files = [], [], []
        web = tlsserver.webroot(s)
        if f.get(f"dir:{web}") != "root:root:755":
            lines.append(f"install -d -m 755 -o root -g root {q(web)}")
            what.append(f"challenge webroot {web}")
        if f.get(f"sha:{tlsserver.hook_path(s)}") != sha256(tlsserver.RELOAD_HOOK):
            lines.append(f"install -d -m 755 {tlsserver.HOOK_DIR}")
            lines.append(write_file(tlsserver.hook_path(s), tlsserver.RELOAD_HOOK, "0755"))
            files.append((tlsserver.hook_path(s), tlsserver.RELOAD_HOOK))
            what.append("certbot deploy hook: systemctl reload nginx")
        if s.acme_ca_bundle:
            bundle = tls.local(s, s.acme_ca_bundle).read_text()
            dropin = tlsserver.certbot_dropin_content(s)
            if f.get(f"sha:{tlsserver.ca_bundle_path(s)}") != sha256(bundle):
                lines.append("install -d -m 755 /etc/letsencrypt")
                lines.append(write_file(tlsserver.ca_bundle_path(s), bundle))
                files.append((tlsserver.ca_bundle_path(s), bundle))
                what.append("acme_ca_bundle")
            if f.get(f"sha:{tlsserver.certbot_dropin(s)}") != sha256(dropin):
                lines.append(f"install -d -m 755 {tlsserver.CERTBOT_DROPIN_DIR}")
                lines.append(write_file(tlsserver.certbot_dropin(s), dropin))
                files.append((tlsserver.certbot_dropin(s), dropin))
                lines.append("systemctl daemon-reload")
                what.append("certbot.service trusts it")
        if f.get("enabled:certbot.timer") != "enabled":
            lines.append("systemctl enable -q --now certbot.timer")
            what.append("enable certbot.timer")
        return Change(self.name, ", ".join(what), lines, files) if lines else Change(self.name)


class AcmeCertificate:
    """After the site: a certificate for all domains, unless one for exactly them exists."""

    name = "tls-certificate"

    def probes(self, s):
        if s.tls != "acme":
            return []
        return [facts.exists(tlsserver.cert_path(s)), tlsserver.CertNames(tlsserver.cert_path(s))]

    def plan(self, s, f) -> Change:
        if s.tls != "acme":
            return Change(self.name)
        cert = tlsserver.cert_path(s)
        have = f.get(f"exists:{cert}") == "yes"
        names = f.get(f"certnames:{cert}", facts.MISSING)
        want = tlsserver.names_fact(tls.real_domains(s.domains))
        if have and names in (want, facts.MISSING):
            return Change(self.name)
        lines, files = tlsserver.issue_lines(s, restore_line(s)), []
        if have:  # names changed: the TLS site is in place already and picks the new one up
            lines.append("systemctl reload nginx")
        else:
            tls_site = site_content(s, ready=True)
            lines += apply_lines(s, tls_site)  # same nginx -t gate
            files.append((layout.nginx_site(s), tls_site))
        server = tls.acme_directory(s.acme_server)
        return Change(self.name, f"certificate for {want.replace(',', ', ')} from {server}",
                      lines, files)
