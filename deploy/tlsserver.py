"""Where TLS lives on the server and the shell that manages it (pure: settings in, text out).

    tls: files   /etc/nginx/tls/<app>/fullchain.pem (0644), privkey.pem (root, 0600)
    tls: acme    /etc/letsencrypt/live/<app>/ (certbot's lineage named after the app),
                 challenges from /var/www/<app>-acme/.well-known/acme-challenge/ on port 80,
                 renewal by certbot.timer; renewal-hooks/deploy/<app>-nginx reloads nginx.
                 With acme_ca_bundle: that PEM on the server plus a certbot.service drop-in
                 (REQUESTS_CA_BUNDLE) so the timer's renewals trust the same CA.
"""
from __future__ import annotations

from deploy import tls
from deploy import facts
from deploy.facts import Probe
from deploy.shell import fail, q, scratch

LE_LIVE = "/etc/letsencrypt/live"
HOOK_DIR = "/etc/letsencrypt/renewal-hooks/deploy"
CERTBOT_DROPIN_DIR = "/etc/systemd/system/certbot.service.d"
RELOAD_HOOK = "#!/bin/sh\n# Managed by flasksample: a renewed certificate reaches nginx by a " \
              "graceful reload.\nexec systemctl reload nginx\n"


def cert_path(s) -> str:
    if s.tls == "acme":
        return f"{LE_LIVE}/{s.app_name}/fullchain.pem"
    return f"/etc/nginx/tls/{s.app_name}/fullchain.pem"


def key_path(s) -> str:
    if s.tls == "acme":
        return f"{LE_LIVE}/{s.app_name}/privkey.pem"
    return f"/etc/nginx/tls/{s.app_name}/privkey.pem"


def webroot(s) -> str:
    return f"/var/www/{s.app_name}-acme"


def ca_bundle_path(s) -> str:
    return f"/etc/letsencrypt/{s.app_name}-acme-ca.pem"


def certbot_dropin(s) -> str:
    return f"{CERTBOT_DROPIN_DIR}/{s.app_name}-ca.conf"


def certbot_dropin_content(s) -> str:
    return (f"# Managed by flasksample: certbot's timer trusts acme_ca_bundle to reach "
            f"acme_server.\n[Service]\nEnvironment=REQUESTS_CA_BUNDLE={ca_bundle_path(s)}\n")


def hook_path(s) -> str:
    return f"{HOOK_DIR}/{s.app_name}-nginx"


class CertNames(Probe):
    """The DNS names of the certificate at `arg`, sorted and comma-joined (or 'missing')."""

    def __init__(self, path: str):
        super().__init__("certnames", path)

    def command(self) -> str:
        return (f"openssl x509 -in {q(self.arg)} -noout -ext subjectAltName 2>/dev/null "
                "| sed 1d | tr -d ' ' | tr ',' '\\n' | sed -n 's/^DNS://p' | sort | paste -sd, - "
                "| grep . || echo missing")


def names_fact(names: list[str]) -> str:
    return ",".join(sorted(names))


def certbot_env(s) -> str:
    return f"REQUESTS_CA_BUNDLE={q(ca_bundle_path(s))} " if s.acme_ca_bundle else ""


def issue_lines(s, restore_site: str) -> list[str]:
    """certbot certonly for all domains through the site's webroot; on failure the site this
    script replaced comes back (`restore_site`, when `kit_site_saved` says it saved one), then
    one line naming the ACME server's reason and exit 1."""
    log = scratch("certbot.log")
    domains = tls.real_domains(s.domains)
    args = " ".join(f"-d {q(d)}" for d in domains)
    cmd = (f"{certbot_env(s)}certbot certonly -n --agree-tos --no-eff-email "
           f"-m {q(s.acme_email)} --server {q(tls.acme_directory(s.acme_server))} "
           f"--webroot -w {q(webroot(s))} --cert-name {q(s.app_name)} {args}")
    why = (f"$(grep -m1 -oE '(Detail|Error|An unexpected error occurred):.*' {log} "
           f"| tr -d '\\r' | cut -c1-240)")
    names = ", ".join(domains)
    return [
        f"if ! {cmd} >{log} 2>&1; then tail -n 12 {log}; "
        f"if [ -n \"${{kit_site_saved:-}}\" ]; then {restore_site}; "
        "nginx -t >/dev/null 2>&1 && systemctl reload nginx; fi; "
        f"kit_why={why} || true; "
        + fail(f"no certificate for {names}: ", "make every name in domains resolve to this host "
               "with port 80 reachable from the ACME server, then run fab setup again (the "
               "previous site keeps serving)", detail="kit_why") + "; fi",
    ]


def renew_script_lines(s) -> list[str]:
    """Force a renewal now; certbot's deploy hook reloads nginx gracefully."""
    log = scratch("certbot-renew.log")
    return [
        f"test -e {q(cert_path(s))} || " + fail("no certificate from certbot yet", "run fab setup first"),
        f"if ! {certbot_env(s)}certbot renew -n --force-renewal --no-random-sleep-on-renew "
        f"--cert-name {q(s.app_name)} >{log} 2>&1; then tail -n 12 {log}; "
        + fail("certbot renew failed (see the lines above)",
               "check that the ACME server is reachable and the domains still point here") + "; fi",
        "echo renewed",
    ]


def status_lines(s) -> list[str]:
    """`fab status` lines: the certificate's names, issuer and expiry."""
    if s.tls == "off":
        return ["echo 'tls:      off'"]
    c = q(cert_path(s))
    return [
        f"if [ -r {c} ]; then",
        f"  echo \"tls:      {s.tls}, names $(openssl x509 -in {c} -noout -ext subjectAltName "
        "2>/dev/null | sed 1d | tr -d ' ' | sed 's/DNS://g')\"",
        f"  echo \"issuer:   $(openssl x509 -in {c} -noout -issuer -nameopt RFC2253 | sed 's/^issuer=//')\"",
        f"  echo \"expires:  $(openssl x509 -in {c} -noout -enddate | sed 's/^notAfter=//')\"",
        "else",
        f"  echo 'tls:      {s.tls}, no certificate yet (fab setup gets or installs it)'",
        "fi",
    ]


def nginx_tls(s, ready: bool) -> dict:
    """The `tls` value nginx templates read (see nginx/tls.conf.j2). `ready`: the certificate is
    on the server, so the site may listen on 443 (before that, acme serves challenges on 80)."""
    return {"on": s.tls != "off" and ready, "cert": cert_path(s), "key": key_path(s),
            "hsts": s.hsts, "zone": f"{s.app_name}_tls",
            "webroot": webroot(s) if s.tls == "acme" else ""}


def site_ready(s, f) -> bool:
    """Whether the site may listen on 443: `files` puts the pair there earlier in the same run;
    `acme` once certbot's certificate exists (facts from `site_probes`)."""
    if s.tls == "acme":
        return f.get(f"exists:{cert_path(s)}") == "yes"
    return s.tls == "files"


def site_probes(s) -> list:
    return [facts.exists(cert_path(s))] if s.tls == "acme" else []
