"""X1: `fab --debug` logs every config layer; no password or passphrase may reach the output.
Run through the real `fab` program, as a user would."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from deploy.cli import mask_secrets

ROOT = Path(__file__).resolve().parents[2]
FAB = str(Path(sys.executable).parent / "fab")
SECRET = "hunter2-'q\"-pw"


def fab(*args, stdin="", env=None):
    out = subprocess.run([FAB, "--debug", *args, "settings"], input=stdin, capture_output=True,
                         text=True, cwd=ROOT, env={**os.environ, **(env or {})}, timeout=120,
                         start_new_session=True)  # no terminal: getpass reads stdin
    return out.stdout + out.stderr


@pytest.mark.parametrize("flag", ["--prompt-for-sudo-password", "--prompt-for-login-password",
                                  "--prompt-for-passphrase"])
def test_prompted_secrets_never_reach_debug_output(flag):
    text = fab(flag, stdin=SECRET + "\n")
    assert "Overrides" in text and "'***'" in text  # the layer was logged, masked
    assert "hunter2" not in text


def test_secret_from_the_environment_never_reaches_debug_output():
    text = fab(env={"FABRIC_SUDO_PASSWORD": SECRET})
    assert "Environment variable config" in text and "hunter2" not in text


def test_mask_secrets_keeps_everything_else():
    assert mask_secrets("{'sudo': {'password': 'a\\'b', 'user': 'x'}, 'passphrase': \"p'q\"}") == \
        "{'sudo': {'password': '***', 'user': 'x'}, 'passphrase': '***'}"


def test_paramikos_handshake_errors_never_reach_stderr_as_tracebacks():
    """The fault suite's reboot: the undo reconnected while sshd was starting; paramiko's
    'Exception (client): Error reading SSH protocol banner' + traceback came before fab's line."""
    import subprocess
    import sys

    code = ("import logging, deploy.cli\n"
            "try:\n    raise ConnectionResetError(104, 'reset')\n"
            "except OSError:\n    logging.getLogger('paramiko.transport').exception('Exception (client): banner')\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stderr == "", out.stderr
