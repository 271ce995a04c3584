"""`fab tls.renew`: renew the ACME certificate now (certbot's timer does it on its own).

    fab -H web1 tls.renew        certbot renew --force-renewal for the app's certificate;
                                 its deploy hook reloads nginx gracefully (no request dropped)

The certificate's names, issuer and expiry are in `fab status`.
"""
from __future__ import annotations

from invoke import Collection

from deploy import report
from deploy.errors import KitError
from deploy.fleet import each, on_hosts


def renew_one(remote, s) -> None:
    from deploy import tlsserver
    from deploy.shell import script

    if s.tls != "acme":
        raise KitError(f"{remote.label}: tls is {s.tls!r}, not acme: nothing to renew",
                       "with tls: files, point tls_cert/tls_key at the new pair and run fab setup")
    out = remote.must(script(tlsserver.renew_script_lines(s), tlsserver.status_lines(s)),
                      "renewing the certificate")
    for line in out.lines:
        report.host_say(remote.label, "  " + line)


@on_hosts()
def renew(fleet):
    """Renew the ACME certificate now and reload nginx gracefully."""
    each(fleet.web, lambda r: renew_one(r, fleet.settings_for(r)))


tls_ns = Collection("tls", renew)
