"""Setup steps for a load balancer host (role `lb`): nginx, and its site spreading requests
over the web hosts (nginx/lb.conf.j2), gated by `nginx -t` and reloaded gracefully; with
`tls:` the certificate steps of an app host too, so TLS terminates on the balancer."""
from __future__ import annotations

from deploy import balancer, tlsserver
from deploy.steps import tls
from deploy.steps.packages import Packages
from deploy.steps.site import NginxSite

LB_PACKAGES = ["nginx", "curl"]


class BalancerSite(NginxSite):
    name = "lb-site"

    def __init__(self, members):
        self.members = members

    def content(self, s, f=None) -> str:
        return balancer.render(s, self.members, tls_ready=tlsserver.site_ready(s, f or {}))


def ordered(s, members) -> list:
    """The steps `fab setup` runs on a load balancer, in order."""
    packages = LB_PACKAGES + {"off": [], "files": ["openssl"], "acme": ["openssl", "certbot"]}[s.tls]
    before_site = [tls.TlsFiles()] if s.tls != "off" else []
    after_site = [tls.AcmeCertificate()] if s.tls == "acme" else []
    return [Packages(packages), *before_site, BalancerSite(members), *after_site]
