"""Setup steps for a load balancer host (role `lb`): nginx, and its site spreading requests
over the web hosts (nginx/lb.conf.j2), gated by `nginx -t` and reloaded gracefully."""
from __future__ import annotations

from deploy import balancer
from deploy.steps.packages import Packages
from deploy.steps.site import NginxSite

LB_PACKAGES = ["nginx", "curl"]


class BalancerSite(NginxSite):
    name = "lb-site"

    def __init__(self, members):
        self.members = members

    def content(self, s, f=None) -> str:
        return balancer.render(s, self.members)


def ordered(members) -> list:
    """The steps `fab setup` runs on a load balancer, in order."""
    return [Packages(LB_PACKAGES), BalancerSite(members)]
