"""Issue 14: every direct dependency is pinned in pyproject.toml and the same version is in
constraints.txt, which pins the transitive ones too; nothing pinned goes unused."""
import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def pins() -> dict[str, str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    deps = project["dependencies"] + [d for group in project["optional-dependencies"].values()
                                      for d in group]
    out = {}
    for dep in deps:
        m = re.fullmatch(r"([A-Za-z0-9_.-]+)==([A-Za-z0-9.]+)", dep)
        assert m, f"{dep} is not pinned with =="
        out[m.group(1).lower()] = m.group(2)
    return out


def constraints() -> dict[str, str]:
    out = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, version = line.split("==")
            out[name.lower()] = version
    return out


def test_direct_pins_match_the_constraints():
    c = constraints()
    for name, version in pins().items():
        assert c.get(name) == version, f"{name}: pyproject {version}, constraints {c.get(name)}"


def test_the_venv_is_built_with_the_constraints():
    assert "-c constraints.txt" in (ROOT / "Makefile").read_text()


def test_no_unused_test_plugin_is_pinned():
    assert "pytest-testinfra" not in pins() and "pytest-testinfra" not in constraints()
