"""Shared helpers for the unit tests of the kit's pure parts (settings in, shell/files out)."""
from __future__ import annotations

import subprocess

import pytest

from deploy import settings as settings_mod


@pytest.fixture
def make():
    """Validated Settings from a raw `flasksample:` mapping given as keywords."""
    def _make(**raw):
        return settings_mod.build(raw)
    return _make


@pytest.fixture
def s():
    """The kit's defaults (app 'flasksample' under /srv/flasksample, systemd)."""
    return settings_mod.build({})


def bash(text: str, *, cwd=None, check: bool = False) -> subprocess.CompletedProcess:
    """Run a script with local bash (no root, no network); output as text."""
    return subprocess.run(["bash", "-c", text], capture_output=True, text=True, cwd=cwd,
                          check=check, timeout=10)


def bash_syntax_ok(text: str) -> subprocess.CompletedProcess:
    """`bash -n`: parse the script without running anything."""
    return subprocess.run(["bash", "-n"], input=text, capture_output=True, text=True, timeout=10)


@pytest.fixture
def run_bash():
    return bash


@pytest.fixture
def syntax_ok():
    return bash_syntax_ok
