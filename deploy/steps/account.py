"""Setup steps: the app's system user (no login shell) and its directory tree.

The code directories belong to root, so the app user can read its code but not change it;
only `shared/` is readable by the app's group, and nothing is writable by the app.
"""
from __future__ import annotations

from deploy import facts, layout
from deploy.errors import KitError
from deploy.shell import q
from deploy.steps import Change


NOLOGIN = ("/usr/sbin/nologin", "/sbin/nologin", "/bin/false", "/usr/bin/false")
VENDOR_UNIT_DIRS = ("/usr/lib/systemd/system", "/lib/systemd/system")


class AppUser:
    name = "user"

    def probes(self, s):
        return [facts.user(s.app_user)] + [facts.exists(f"{d}/{s.app_name}.service")
                                           for d in VENDOR_UNIT_DIRS]

    def plan(self, s, f) -> Change:
        for d in VENDOR_UNIT_DIRS:
            if f.get(f"exists:{d}/{s.app_name}.service") == "yes":
                raise KitError(f"app_name '{s.app_name}' is the name of a service the system "
                               f"already has ({d}/{s.app_name}.service)", "pick another app_name")
        known = f.get(f"user:{s.app_user}", facts.MISSING)
        if known != facts.MISSING:
            # the kit's mark: the home it gives (the app's root) and no login shell
            _, home, shell = (known.split(":") + ["", ""])[:3]
            if home != s.root or shell not in NOLOGIN:
                raise KitError(f"user {s.app_user} already exists on the host and is not one the "
                               f"kit made (home {home or '?'}, shell {shell or '?'})",
                               "pick another app_name; the kit does not adopt existing accounts")
            return Change(self.name)
        line = (f"useradd --system --user-group --home-dir {q(s.root)} --no-create-home "
                f"--shell /usr/sbin/nologin {q(s.app_user)}")
        return Change(self.name, f"create system user {s.app_user}", [line])


def wanted_dirs(s) -> list[tuple[str, str, str]]:
    """(path, owner:group, mode) of every directory the kit manages."""
    return [
        (s.root, "root:root", "755"),
        (layout.releases_dir(s), "root:root", "755"),
        (layout.venvs_dir(s), "root:root", "755"),
        (layout.shared_dir(s), f"root:{s.app_user}", "750"),
        (layout.kit_dir(s), "root:root", "700"),
    ]


class Directories:
    name = "directories"

    def probes(self, s):
        return [facts.dir_(path) for path, _, _ in wanted_dirs(s)]

    def plan(self, s, f) -> Change:
        lines, names = [], []
        for path, owner, mode in wanted_dirs(s):
            if f.get(f"dir:{path}") != f"{owner}:{mode}":
                user, group = owner.split(":")
                lines.append(f"install -d -o {user} -g {group} -m {mode} {q(path)}")
                names.append(path)
        if not lines:
            return Change(self.name)
        return Change(self.name, "create/fix " + " ".join(names), lines)
