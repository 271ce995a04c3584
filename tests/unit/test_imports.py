"""fab's start-up: a task loads only what it needs (structure, never timing).

Every `fab` run imports the task table (deploy/fabfile.py) before it does anything; each task
imports the modules it works with when it runs. Checked in a fresh interpreter: which modules
`sys.modules` holds after the table, and after planning a setup (what a no-op `fab setup`
does locally, without the SSH part).
"""
from __future__ import annotations

import json
import subprocess
import sys

from deploy.settings import PROJECT_ROOT

# Not needed to list the tasks or start one: the deploy, packing, TLS, templating and
# sandbox code, and the libraries behind them.
HEAVY_FOR_THE_TABLE = [
    "jinja2", "cryptography.x509", "yaml", "tomllib", "tarfile", "uuid",
    "deploy.settings", "deploy.tls", "deploy.templates", "deploy.runner", "deploy.trust",
    "deploy.knownhosts", "deploy.release", "deploy.package",
    "deploy.envfile", "deploy.tasks.deploy", "deploy.tasks.setup", "deploy.tasks.balance",
    "deploy.tasks.overview", "deploy.sandbox.manager", "deploy.sandbox.machine", "deploy.init",
]
# Not needed by setup on an app host (tls: off).
HEAVY_FOR_SETUP = [
    "cryptography.x509", "tomllib", "tarfile", "uuid", "deploy.package",
    "deploy.release", "deploy.tasks.deploy", "deploy.tasks.balance", "deploy.balancer",
    "deploy.tasks.overview", "deploy.sandbox.manager", "deploy.init", "deploy.health",
]


def loaded_after(code: str) -> set[str]:
    """The modules a fresh interpreter holds after `import fabric` and then `code`, beyond
    those `import fabric` loaded itself (fab has imported Fabric before it reads a fabfile)."""
    probe = ("import json, sys\nimport fabric\nbefore = set(sys.modules)\n" + code +
             "\nprint(json.dumps(sorted(set(sys.modules) - before)))\n")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         cwd=PROJECT_ROOT, timeout=60)
    assert out.returncode == 0, out.stderr
    return set(json.loads(out.stdout.splitlines()[-1]))


def test_the_task_table_imports_no_heavy_module():
    loaded = loaded_after("import fabfile")
    assert "deploy.fabfile" in loaded
    assert sorted(m for m in HEAVY_FOR_THE_TABLE if m in loaded) == []


def test_the_flasksample_program_imports_no_heavy_module():
    loaded = loaded_after("from deploy.main import make_program\nmake_program()")
    assert sorted(m for m in HEAVY_FOR_THE_TABLE if m in loaded) == []


def test_setup_asks_the_host_before_it_loads_jinja2():
    # the facts script goes out first; templates render while the host answers
    loaded = loaded_after(
        "from deploy import envfile, fabfile, facts, runner, settings, trust\n"
        "from deploy.steps import ordered\n"
        "from deploy.tasks import setup as provision\n"
        f"s = settings.build({{}}, project_dir={str(PROJECT_ROOT)!r})\n"
        "facts.read_script([p for st in ordered(s) for p in st.probes(s)] + [envfile.block_probe(s)])\n")
    assert "deploy.steps.units" in loaded and "jinja2" not in loaded


def test_managers_name_the_paths_of_the_files_they_render():
    from deploy import settings
    from deploy.managers import MANAGERS

    s = settings.build({"processes": {"worker": "python -m worker"}}, project_dir=str(PROJECT_ROOT))
    for manager in MANAGERS.values():
        assert manager.paths(s) == [mf.path for mf in manager.files(s)]


def test_planning_a_setup_imports_only_what_setup_needs():
    loaded = loaded_after(
        "from deploy import envfile, fabfile, runner, settings, trust\n"
        "from deploy.steps import ordered\n"
        "from deploy.tasks import setup as provision\n"
        f"s = settings.build({{}}, project_dir={str(PROJECT_ROOT)!r})\n"
        "steps = ordered(s)\n"
        "probes = [p for st in steps for p in st.probes(s)] + [envfile.block_probe(s)]\n"
        "provision.plan(s, {}, steps)\n"
        "envfile.block_in_place(s, {})\n")
    assert {"jinja2", "deploy.tasks.setup", "deploy.steps.units"} <= loaded  # it did plan
    assert sorted(m for m in HEAVY_FOR_SETUP if m in loaded) == []


def bytecode_setting_after_a_run(program: str, env_value: str | None) -> bool:
    """sys.dont_write_bytecode once a `fab`/`flasksample` run has loaded its tasks."""
    import os

    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    if env_value is not None:
        env["PYTHONDONTWRITEBYTECODE"] = env_value
    code = (f"import sys\n{program}\n"
            "p.run(['fab', '--list'], exit=False)\nprint(sys.dont_write_bytecode)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=PROJECT_ROOT, env=env, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout.splitlines()[-1] == "True"


def test_fab_caches_the_kits_compiled_modules_unless_python_is_told_not_to():
    # invoke turns .pyc writing off for its whole process; without the kit's .pyc files
    # every run compiled its modules again
    fab = "from fabric.main import program as p"
    flasksample = "from deploy.main import make_program\np = make_program()"
    for program in (fab, flasksample):
        assert bytecode_setting_after_a_run(program, None) is False
        assert bytecode_setting_after_a_run(program, "1") is True
