"""The `flasksample` program: Fabric's `fab` with the kit's tasks built in.

Fabric's documented way to ship a distinct binary ("Reusing Invoke's CLI module as a distinct
binary"): a `Fab` program given the kit's namespace, so it needs no fabfile. Being given a
namespace, Fabric would not look for a project config; this program reads `fabric.yaml` from
the user's repository instead: the nearest directory, from the current one upwards, holding
one (else the current directory). `flasksample init` writes one.

    pipx install git+https://…/flasksample.git
    cd ~/src/myapp && flasksample init && flasksample -H deploy@web1 setup deploy
"""
from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import fabric.main
from fabric import Config, Executor
from fabric.main import Fab

from deploy import write_bytecode

CONFIG_NAMES = ("fabric.yaml", "fabric.yml", "fabric.json", "fabric.py")


def project_dir(start: Path | None = None) -> Path:
    """The user's repository: the nearest directory with a fabric.* file, else the cwd."""
    start = (start or Path.cwd()).resolve()
    for d in (start, *start.parents):
        if any((d / name).is_file() for name in CONFIG_NAMES):
            return d
    return start


class Program(Fab):
    def parse_collection(self):
        write_bytecode()  # parse_core, just before, turned it off
        super().parse_collection()
        self.config.set_project_location(str(project_dir()))
        self.config.load_project()


def kit_version() -> str:
    try:
        return version("flasksample")
    except PackageNotFoundError:
        return "checkout"


def make_program() -> Program:
    from deploy.fabfile import ns

    return Program(name="flasksample", binary="flasksample", version=kit_version(), namespace=ns,
                   executor_class=Executor, config_class=Config)


def main() -> None:
    program = make_program()
    # deploy.fleet reads the `-H` list of the running program from this attribute.
    fabric.main.program = program
    program.run()
