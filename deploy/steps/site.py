"""Setup step: the nginx site for the app, gated by `nginx -t`.

The new config is put in place, `nginx -t` checks the whole configuration, and on failure
the previous files are put back before nginx is touched, so nginx keeps serving.
"""
from __future__ import annotations

from deploy import facts, layout, templates, tlsserver
from deploy.shell import fail, q, scratch, write_file
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


def apply_lines(s, content: str) -> list[str]:
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
        f"if systemctl is-active -q nginx; then {RELOAD}; else systemctl start nginx; fi",
    ]


# `systemctl reload nginx` only signals the master: it returns before the new configuration
# serves. Setup returns once it does: every worker of the old one has exited or stopped
# accepting (nginx retitles it "worker process is shutting down" as it closes its listening
# sockets); at most 5 s (a master that could not load the new config keeps its workers).
RELOAD = (f"kit_old=; if [ -s {q(layout.NGINX_PID)} ]; then "
          f"kit_old=$(pgrep -d ' ' -x -P \"$(cat {q(layout.NGINX_PID)})\" nginx || true); fi; "
          "systemctl reload nginx; "
          "for kit_i in $(seq 250); do kit_left=; for kit_p in $kit_old; do "
          "case \"$(tr -d '\\0' < /proc/$kit_p/cmdline 2>/dev/null)\" in "
          "''|*'shutting down'*) ;; *) kit_left=1 ;; esac; done; "
          "[ -z \"$kit_left\" ] && break; sleep 0.02; done")


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
