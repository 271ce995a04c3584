"""Release programs: prepare (unpack + venv + preflight), switch `current`, abort, roll back.

The programs are shell files under deploy/remote/; the functions here only turn Settings and
a few names into their values (`shell.program` quotes them). The order of a deploy on each host:

  prepare  lock, unpack into releases/<id>, reuse or build the venv for its requirements (as
           the app user), load it as a gunicorn worker does, under the service's own user,
           env and sandbox, and ask its health path in-process (deploy/kit/preflight.py; it
           takes no traffic)                                         -> remote/prepare.sh
  switch   point `current` at it (rename of a symlink: atomic), reload gunicorn (restart when
           the venv changed), wait until nginx answers with the new release id; on failure
           point `current` back, reload, and report the app's last log lines; record the
           release that was live before (`previous`), keep the newest N releases, unlock
                                                                     -> remote/switch.sh
  abort    undo a prepared release that was never switched           -> remote/abort.sh
"""
from __future__ import annotations

from deploy import appcmd, audit, health, layout, lock
from deploy.errors import KitError
from deploy.managers import manager_for
from deploy.protocol import Exit, is_release
from deploy.shell import program, q

PREFLIGHT_EXIT = Exit.PREFLIGHT
UNHEALTHY_EXIT = Exit.UNHEALTHY


def checked(release: str) -> str:
    """A release name, refused unless it has the shape the kit gives them (before any use)."""
    if not is_release(release):
        raise KitError(f"{release!r} is not a release name",
                       "use a name from fab releases, like 20261126-231500.123-abc1234")
    return release


def common_values(s, who: lock.Holder | None = None, force: bool = False) -> dict:
    """The values every remote program gets: names, paths (all from layout), lock, health."""
    return {
        "APP": s.app_name, "APP_USER": s.app_user, "MANAGER": s.process_manager,
        "ROOT": s.root, "RELEASES": layout.releases_dir(s), "CURRENT": layout.current_link(s),
        "PREVIOUS": layout.previous_link(s), "VENVS": layout.venvs_dir(s),
        "SHARED": layout.shared_dir(s), "ENV_FILE": layout.env_file(s),
        "DEPLOY_LOG": layout.deploy_log(s), "PROCESSES": layout.process_names(s),
        "AUDIT_LOG": layout.audit_log(s), "AUDIT_WHO": audit.clean(str(who or "")),
        "MASTER_PIDFILE": layout.master_pidfile(s),  # supervisor's keeper: the hand-over reads it
        "SUPERVISOR_LOGS": layout.supervisor_log_dir(s),
        **lock.values(s, who, force), **health.values(s),
    }


def run(name: str, s, who: lock.Holder | None = None, force: bool = False, *,
        functions: dict | None = None, libs: tuple[str, ...] = (), **values) -> str:
    """The script for program `name` with the common values and `values` (and shell
    `functions` other modules build, e.g. the certificate lines of fab status; `libs`: more
    function files under deploy/remote/)."""
    return program(name, common_values(s, who, force) | values, s.process_manager, functions, libs)


def prepare_script(s, release: str, req_hash: str, who: lock.Holder, force: bool,
                   release_command: bool = False) -> str:
    """The archive arrives base64-encoded on stdin, in the same round trip as this script.
    `release_command`: run the app's release_command in it (once per deploy: the first host)."""
    rel = layout.release_dir(s, checked(release))
    m = manager_for(s)
    command = s.release_command if release_command else ""
    run_command = appcmd.command_argv(s, rel, command, unit=f"{s.app_name}-release-command") if command else []
    return run("prepare", s, who, force, libs=("venv.sh",), RELEASE=release, REL=rel, REQ_HASH=req_hash,
               RELEASE_COMMAND=command, RELEASE_COMMAND_RUN=run_command,
               VENV=layout.venv_dir(s, req_hash),
               REQUIREMENTS=layout.kit_file(rel, "requirements.txt"), PYTHON=s.python,
               SHARED_DIRS=list(s.shared_dirs), STATIC_DIR=s.static_dir, SETUP_CONFIG=m.installed_probe(s).arg,
               **m.program_values(s, rel))


def switch_script(s, release: str, who: lock.Holder, *, verb: str = "deployed", lock_first: bool = False,
                  force: bool = False, log_lines: int = 20) -> str:
    """Switch to `release` behind the health gate; put the old one back if it fails. A
    deploy's own release (verb "deployed") that fails its gate is removed."""
    return run("switch", s, who, force, RELEASE=checked(release), VERB=verb, LOCK_FIRST=lock_first,
               NEW=verb == "deployed", LOG_LINES=int(log_lines), KEEP_RELEASES=s.keep_releases)


def abort_script(s, release: str, who: lock.Holder) -> str:
    """Undo a prepared, never switched release (another host failed, or Ctrl-C): remove it
    and unlock — only if this run holds the lock, and never the live or previous release."""
    return run("abort", s, who, RELEASE=checked(release))


def rollback_target_script(s, to: str | None) -> str:
    """Print the release to roll back to: `to`, or the one live before the last switch."""
    return run("rollback_target", s, TO=checked(to) if to else "")


def list_script(s) -> str:
    return run("releases", s)


def current_release(s) -> str:
    """Shell: the name of the release `current` points to ('' when there is none)."""
    return f"$(basename \"$(readlink {q(layout.current_link(s))} 2>/dev/null)\" 2>/dev/null || true)"
