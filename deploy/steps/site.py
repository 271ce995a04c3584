"""Setup step: the nginx site for the app, gated by `nginx -t`.

The new config is put in place, `nginx -t` checks the whole configuration, and on failure
the previous files are put back before nginx is touched, so nginx keeps serving.
"""
from __future__ import annotations

from deploy import facts, layout, templates, tlsserver
from deploy.shell import fail, q, scratch, subprogram, write_file
from deploy.steps import Change
from deploy.steps.units import sha256


def site_content(s, ready: bool) -> str:
    """The site; with TLS on and `ready` (a certificate exists) it also listens on 443."""
    return templates.render("nginx/site.conf.j2", s, tls=tlsserver.nginx_tls(s, ready))


BACKUP = scratch("nginx-backup")


def _touched(s) -> list[tuple[str, str]]:
    """(live path, name of its copy in the backup) for everything the swap touches."""
    return [(q(layout.nginx_site(s)), "site"), (q(layout.nginx_enabled(s)), "enabled"),
            (q(layout.NGINX_DEFAULT_SITE), "default")]


def restore_line(s) -> str:
    """Put back the files the last swap saved (a later step that fails uses it too)."""
    return "; ".join(f"rm -f {live}; cp -a {BACKUP}/{name} {live} 2>/dev/null || true"
                     for live, name in _touched(s))


def swap_lines(s, content: str) -> list[str]:
    """Swap in the site (keeping a backup), test, and restore everything if the test fails.
    Sets `kit_site_saved=1` in the script once the previous files are saved."""
    backup, test_log = BACKUP, scratch("nginx-test.log")
    touched = _touched(s)
    (site, _), (enabled, _), (default, _) = touched
    save = "; ".join(f"cp -a {live} {backup}/{name} 2>/dev/null || true" for live, name in touched)
    restore = restore_line(s)
    return [
        f"rm -rf {backup} && mkdir -p {backup}",
        save + "; kit_site_saved=1",
        write_file(layout.nginx_site(s), content),
        f"ln -sfn {site} {enabled}",
        f"rm -f {default}",
        f"if ! nginx -t >{test_log} 2>&1; then {restore}; "
        f"grep -E 'emerg|error' {test_log} | head -n 3 || true; "
        + fail("nginx -t rejected the new site; the previous config was put back",
               "read the lines above; fix and run again") + "; fi",
    ]


def reload_line() -> str:
    """nginx reloaded (or started), returning once the new configuration serves: at most 5 s
    (deploy/remote/nginx_reload.sh). Built when a plan changes the site, not at import: it
    reads lib.sh and the program from disk."""
    return subprogram("nginx_reload", {"WAIT": 5, "NGINX_PID": layout.NGINX_PID})


def apply_lines(s, content: str) -> list[str]:
    """swap_lines, then nginx reloads the new site."""
    return swap_lines(s, content) + [reload_line()]


class NginxSite:
    name = "nginx-site"

    def content(self, s, f) -> str:
        return site_content(s, tlsserver.site_ready(s, f))

    def probes(self, s):
        return [facts.sha(layout.nginx_site(s)), facts.link(layout.nginx_enabled(s)),
                facts.exists(layout.NGINX_DEFAULT_SITE), facts.enabled("nginx"),
                facts.active("nginx")] + tlsserver.site_probes(s)

    def plan(self, s, f) -> Change:
        content = self.content(s, f)
        lines, what, files = [], [], []
        if (f.get(f"sha:{layout.nginx_site(s)}") != sha256(content)
                or f.get(f"link:{layout.nginx_enabled(s)}") != layout.nginx_site(s)
                or f.get(f"exists:{layout.NGINX_DEFAULT_SITE}") == "yes"):
            lines += apply_lines(s, content)
            files.append((layout.nginx_site(s), content))
            what.append(f"write {layout.nginx_site(s)}, enable it, remove the default site")
        elif f.get("active:nginx") != "active":
            lines.append("systemctl start nginx")
            what.append("start nginx")
        if f.get("enabled:nginx") != "enabled":
            lines.append("systemctl enable -q nginx")
            what.append("enable nginx")
        return Change(self.name, ", ".join(what), lines, files) if lines else Change(self.name)
