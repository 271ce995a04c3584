"""One command of the user's, run like the app runs: release_command, `fab exec`, processes:.

In a release directory, as the app user, with the release's venv first on PATH and the app's
environment (the env file: secrets and `env:`), under the service's sandbox:

  systemd     a transient unit, `systemd-run --wait --pipe` (or `--pty`), given the same
              sandbox properties as the gunicorn unit (systemd/sandbox.conf.j2)
  supervisor  `runuser` with the env file sourced, as supervisord runs the app (supervisor
              has no sandbox of its own)

Commands are the user's on purpose; they reach the shell as one quoted word (`sh -c WORD`).
"""
from __future__ import annotations

from deploy import layout, templates
from deploy.protocol import Exit
from deploy.shell import fail, q

# Unit-lifecycle properties that make no sense for a one-off command (RemoveIPC would remove
# the running app's IPC objects when the command's transient unit ends).
NOT_FOR_COMMANDS = {"RemoveIPC"}


def path_env(release_path: str) -> str:
    return f"{release_path}/.venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def sandbox_properties(s) -> list[str]:
    """`Key=Value` lines of the service's sandbox, as systemd-run `-p` takes them."""
    text = templates.render("systemd/sandbox.conf.j2", s)
    props = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            if line.split("=", 1)[0] not in NOT_FOR_COMMANDS:
                props.append(line)
    return props


def command_argv(s, release_path: str, command: str, tty: bool = False, unit: str = "") -> list[str]:
    """argv (run as root, from /) that runs `command` as the app would; exits with its code."""
    env = layout.env_file(s)
    if s.process_manager == "systemd":
        opts = ["--quiet", "--collect", "--wait", "--pty" if tty else "--pipe",
                "--service-type=exec", f"--uid={s.app_user}", f"--gid={s.app_user}",
                f"--working-directory={release_path}",
                f"--setenv=PATH={path_env(release_path)}",
                f"--setenv=VIRTUAL_ENV={release_path}/.venv",
                f"--property=EnvironmentFile=-{env}"]
        if unit:
            opts.append(f"--unit={unit}")
        opts += [f"--property={p}" for p in sandbox_properties(s)]
        return ["systemd-run", *opts, "--", "/bin/sh", "-c", command]
    inner = (f"set -a; [ -r {q(env)} ] && . {q(env)}; set +a; "
             f"export PATH={q(path_env(release_path))} VIRTUAL_ENV={q(release_path + '/.venv')}; "
             f"cd {q(release_path)} && exec /bin/sh -c {q(command)}")
    return ["runuser", "-u", s.app_user, "--", "/bin/sh", "-c", inner]


def command_line(s, release_path: str, command: str, tty: bool = False, unit: str = "") -> str:
    """Shell (run as root) that runs `command` as the app would; exits with its exit code."""
    argv = command_argv(s, release_path, command, tty, unit)
    line = " ".join(q(a) for a in argv)
    return line if s.process_manager == "systemd" else f"(cd / && {line})"


def exec_lines(s, command: str, tty: bool) -> list[str]:
    """`fab exec`: the command in the current release; its exit code is the script's."""
    cur = layout.current_link(s)
    return [
        f"[ -e {q(cur + '/.venv')} ] || "
        + fail("no release is deployed on this host", "run fab deploy first", Exit.USAGE),
        f"{command_line(s, cur, command, tty)}",
    ]
