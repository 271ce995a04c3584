"""deploy/remote/venv.sh's functions, run for real in local bash on a temp directory: which
requirement lists may start from the live venv, and such a build (copy, own paths, uninstall
what is no longer listed, pip for the rest), with the system python and its pip wheel faked
(runuser and chown do nothing here; no root, no network)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.unit.fakepip import fake_pip_wheel
from deploy.shell import q

VENV_SH = (Path(__file__).resolve().parents[2] / "deploy/remote/venv.sh").read_text()
LIB = f"python{sys.version_info[0]}.{sys.version_info[1]}"


def venv_sh(*calls: str, **values) -> subprocess.CompletedProcess:
    text = "set -euo pipefail\n" + "".join(f"{k}={q(str(v))}\n" for k, v in values.items()) + \
        'runuser() { echo "runuser $2 $4" >> "$KIT_CALLS"; shift 3; "$@"; }\nchown() { :; }\n' + \
        VENV_SH + "\n".join(calls) + "\n"
    return subprocess.run(["bash", "-c", text], capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("text, pins", [
    ("Flask==3.1.3\nzope.interface == 6.0  # why\n\n# only a comment\nA_b-C==1\n",
     ["flask==3.1.3", "zope-interface==6.0", "a-b-c==1"]),
    ("flask[async]==3.1.3\n", ["flask==3.1.3 ["]),
    ('tomli==2.0.1 ; python_version < "3.11"\nidna==3.7', ["tomli==2.0.1 ;", "idna==3.7"]),
])
def test_pins_are_canonical_and_say_what_pip_must_judge(tmp_path, text, pins):
    (tmp_path / "r.txt").write_text(text)
    out = venv_sh(f"pins {q(str(tmp_path / 'r.txt'))}")
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == pins


@pytest.mark.parametrize("line", [
    "flask>=3", "flask", "flask==3.*", "--index-url https://u:secret@example.org/simple",
    "-r other.txt", "flask==3.1.3 \\", "flask==3.1.3 --hash=sha256:abc", "pkg @ https://example.org/p.whl",
    "-e .", "flask===3.1.3"])
def test_anything_but_pins_is_not_seeded(tmp_path, line):
    (tmp_path / "r.txt").write_text(f"idna==3.7\n{line}\n")
    out = venv_sh(f"pins {q(str(tmp_path / 'r.txt'))}")
    assert out.returncode == 1 and "secret" not in out.stdout + out.stderr


@pytest.fixture
def host(tmp_path):
    """A host whose live release uses venvs/h1 (complete, root's), the system python (a wrapper
    around this one, which `python -m venv` uses) and a pip wheel that logs what it is asked."""
    root = tmp_path / "srv"
    py = tmp_path / "python3"
    py.write_text(f"#!/bin/sh\nexec {sys.executable} \"$@\"\n")
    py.chmod(0o755)
    wheels = tmp_path / "wheels"
    fake_pip_wheel(wheels, "import os, sys\n"
                   "open(os.environ['KIT_CALLS'], 'a').write('pip ' + ' '.join(sys.argv[1:]) + '\\n')\n"
                   "if sys.argv[1] == 'uninstall':\n"
                   "    import glob, re, shutil\n"
                   "    for d in glob.glob(os.environ['KIT_SITE'] + '/*.dist-info'):\n"
                   "        if re.sub(r'[-_.]+', '-', os.path.basename(d).split('-')[0]).lower() in sys.argv:\n"
                   "            shutil.rmtree(d)\n"
                   "fail = os.environ.get('KIT_PIP_FAIL', '')\n"
                   "if fail == 'always' or fail and os.path.exists(fail):\n"
                   "    fail != 'always' and os.remove(fail)\n    sys.exit(1)\n")
    seed = root / "venvs/h1"
    site = seed / "lib" / LIB / "site-packages"
    for d in ("flask-3.1.3.dist-info", "idna-3.1.dist-info", "Old_Pkg-1.0.dist-info", "flask/__pycache__"):
        (site / d).mkdir(parents=True)
    (site / "flask/__init__.py").write_text("x = 1\n")
    os.utime(site / "flask/__init__.py", (1_000_000_000, 1_000_000_000))
    (seed / "bin").mkdir()
    (seed / "bin/python").symlink_to(py)
    (seed / "bin/gunicorn").write_text(f"#!{seed}/bin/python\nimport gunicorn\n")
    (seed / "pyvenv.cfg").write_text(f"home = /usr/bin\ncommand = {py} -m venv {seed}\n")
    (seed / ".complete").touch()
    (root / "releases/r1").mkdir(parents=True)
    (root / "releases/r1/.venv").symlink_to("../../venvs/h1")
    (root / "current").symlink_to("releases/r1")
    calls = tmp_path / "calls"
    calls.write_text("")

    def ensure(requirements: str, **env):
        reqs = tmp_path / "requirements.txt"
        reqs.write_text(requirements)
        text = VENV_SH.replace("system_python=/usr/bin/python3", f"system_python={py}").replace(
            "pip_wheels=/usr/share/python-wheels", f"pip_wheels={wheels}")
        values = dict(APP_USER="app", PYTHON=py, VENVS=root / "venvs", CURRENT=root / "current",
                      KIT_CALLS=calls, KIT_SITE=root / "venvs/h2/lib" / LIB / "site-packages", **env)
        script = "export KIT_CALLS KIT_SITE" + (" KIT_PIP_FAIL\n" if "KIT_PIP_FAIL" in env else "\n")
        out = subprocess.run(["bash", "-c", "set -euo pipefail\n" + "".join(f"{k}={q(str(v))}\n" for k, v in values.items())
                              + script + 'runuser() { echo "runuser $4" >> "$KIT_CALLS"; shift 3; "$@"; }\nchown() { :; }\n'
                              + text + f"\nvenv_ensure {q(str(root / 'venvs/h2'))} {q(str(reqs))} {q(str(tmp_path / 'pip.log'))}\n"],
                             capture_output=True, text=True, timeout=60)
        return out, calls.read_text().splitlines(), (tmp_path / "pip.log").read_text()

    return root, ensure, tmp_path / "requirements.txt"


def test_a_requirements_change_starts_from_the_live_venv_and_installs_what_changed(host):
    root, ensure, reqs = host
    out, calls, log = ensure("Flask==3.1.3\nidna==3.7\nblinker==1.9.0\n")
    assert out.returncode == 0, out.stdout + out.stderr + log
    new = root / "venvs/h2"
    assert "building venv h2 (requirements changed; starting from venv h1)" in out.stdout
    assert not any(c.endswith("-m venv") or " -m venv " in c for c in calls)  # no fresh venv
    # what the new list does not name is uninstalled (idna is bumped by pip install itself)
    assert f"pip uninstall -q -y --disable-pip-version-check old-pkg" in calls
    assert f"pip install -q --disable-pip-version-check --no-input -r {reqs}" in calls
    # a copy with its own path; installed files keep their times (their .pyc stay valid)
    assert (new / "bin/gunicorn").read_text() == f"#!{new}/bin/python\nimport gunicorn\n"
    assert f"venv {new}\n" in (new / "pyvenv.cfg").read_text()
    init = new / "lib" / LIB / "site-packages/flask/__init__.py"
    assert init.read_text() == "x = 1\n" and init.stat().st_mtime == 1_000_000_000
    assert (new / ".complete").exists() and (root / "venvs/h1/.complete").exists()
    assert (root / "venvs/h1/bin/gunicorn").read_text().startswith(f"#!{root}/venvs/h1/")  # untouched


def test_pins_of_exactly_what_the_live_venv_holds_need_no_pip_install(host):
    """Only comments changed: the copy is the venv."""
    root, ensure, reqs = host
    out, calls, log = ensure("# pinned\nFlask==3.1.3  # the web framework\nidna==3.1\nold-pkg==1.0\n")
    assert out.returncode == 0, out.stdout + out.stderr + log
    assert "starting from venv h1" in out.stdout and "nothing to install" in log
    assert not [c for c in calls if c.startswith("pip ")]
    site = root / "venvs/h2/lib" / LIB / "site-packages"
    assert sorted(p.name for p in site.glob("*.dist-info")) == \
        ["Old_Pkg-1.0.dist-info", "flask-3.1.3.dist-info", "idna-3.1.dist-info"]


def test_a_dropped_package_is_uninstalled_and_pip_puts_back_what_still_needs_it(host):
    """old-pkg left the list, but another package may depend on it: pip checks, as a fresh
    build would install it."""
    root, ensure, reqs = host
    out, calls, log = ensure("Flask==3.1.3\nidna==3.1\n")
    assert out.returncode == 0, out.stdout + out.stderr + log
    assert [c for c in calls if c.startswith("pip ")] == [
        "pip uninstall -q -y --disable-pip-version-check old-pkg",
        f"pip install -q --disable-pip-version-check --no-input -r {reqs}"]


@pytest.mark.parametrize("requirements", ['Flask==3.1.3\nidna==3.1 ; python_version > "3"\n',
                                          "flask[async]==3.1.3\nidna==3.1\n"])
def test_extras_or_a_marker_are_left_to_pip(host, requirements):
    root, ensure, reqs = host
    out, calls, log = ensure(requirements)
    assert out.returncode == 0, out.stdout + out.stderr + log
    assert "starting from venv h1" in out.stdout
    assert f"pip install -q --disable-pip-version-check --no-input -r {reqs}" in calls


@pytest.mark.parametrize("requirements", ["flask>=3\n", "--index-url https://u:secret@example.org/simple\nflask==3.1.3\n"])
def test_a_list_that_does_not_pin_everything_gets_a_fresh_venv(host, requirements):
    root, ensure, reqs = host
    out, calls, log = ensure(requirements)
    assert out.returncode == 0, out.stdout + out.stderr + log
    assert "starting from" not in out.stdout and "uninstall" not in "\n".join(calls)
    assert (root / "venvs/h2/bin/python").exists() and not (root / "venvs/h2/bin/gunicorn").exists()
    assert "secret" not in out.stdout + out.stderr + log


def test_no_live_venv_or_an_incomplete_one_gets_a_fresh_venv(host):
    root, ensure, reqs = host
    (root / "venvs/h1/.complete").unlink()
    out, calls, log = ensure("idna==3.7\n")
    assert out.returncode == 0, out.stdout + out.stderr + log
    assert "starting from" not in out.stdout and not (root / "venvs/h2/bin/gunicorn").exists()


def test_a_failed_seeded_build_falls_back_to_a_fresh_one(host, tmp_path):
    root, ensure, reqs = host
    flag = tmp_path / "fail-once"
    flag.touch()
    out, calls, log = ensure("Flask==3.1.3\nidna==3.7\n", KIT_PIP_FAIL=flag)
    assert out.returncode == 0, out.stdout + out.stderr + log
    assert "starting from venv h1" in out.stdout and "building venv h2 from nothing" in log
    new = root / "venvs/h2"
    assert not (new / "bin/gunicorn").exists() and not (new / "lib" / LIB / "site-packages/flask").exists()
    assert (new / ".complete").exists()


def test_a_build_that_fails_both_ways_leaves_no_venv(host):
    root, ensure, reqs = host
    out, calls, log = ensure("idna==3.7\n", KIT_PIP_FAIL="always")
    assert out.returncode == 1
    assert "starting from venv h1" in out.stdout and "from nothing" in log
    assert not (root / "venvs/h2").exists() and (root / "venvs/h1/.complete").exists()


def test_the_build_waits_for_the_pip_wheel_while_setup_runs(tmp_path):
    """Setup installs Debian's pip wheel in the same apt run as nginx; the build starts when the
    wheel is in place, or gives up when setup's script ended without it."""
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    text = VENV_SH.replace("pip_wheels=/usr/share/python-wheels", f"pip_wheels={wheels}").replace(
        "apt_archives=/var/cache/apt/archives", f"apt_archives={tmp_path / 'archives'}")
    waiting = subprocess.Popen(["bash", "-c", text + "\npip_wheel_wait $$ && echo go\n"],
                               stdout=subprocess.PIPE, text=True)
    (wheels / "pip-99.1-py3-none-any.whl.dpkg-new").touch()  # dpkg still writing it
    with pytest.raises(subprocess.TimeoutExpired):
        waiting.wait(0.5)
    (wheels / "pip-99.1-py3-none-any.whl.dpkg-new").rename(wheels / "pip-99.1-py3-none-any.whl")
    assert waiting.communicate(timeout=10)[0] == "go\n"

    (wheels / "pip-99.1-py3-none-any.whl").unlink()
    child = subprocess.Popen(["true"])
    child.wait()
    out = subprocess.run(["bash", "-c", text + f"\npip_wheel_wait {child.pid} || echo gave up\n"],
                         capture_output=True, text=True, timeout=10)
    assert "did not arrive: setup ended first" in out.stdout and "gave up" in out.stdout


def test_the_build_takes_the_pip_wheel_from_the_downloaded_deb(tmp_path):
    """apt downloads every package before dpkg unpacks any: the wheel comes out of the .deb."""
    import shutil
    if not shutil.which("dpkg-deb"):
        pytest.skip("dpkg-deb not installed")
    pkg = tmp_path / "pkg"
    fake_pip_wheel(pkg / "usr/share/python-wheels", "print('pip from the deb')\n")
    (pkg / "DEBIAN").mkdir()
    (pkg / "DEBIAN/control").write_text("Package: python3-pip-whl\nVersion: 99.1\nArchitecture: all\n"
                                         "Maintainer: x <x@example.org>\nDescription: pip wheel\n")
    archives = tmp_path / "archives"
    archives.mkdir()
    subprocess.run(["dpkg-deb", "--root-owner-group", "-Zgzip", "--build", str(pkg),
                    str(archives / "python3-pip-whl_99.1_all.deb")], check=True, capture_output=True)
    venvs = tmp_path / "venvs"
    venvs.mkdir()
    text = VENV_SH.replace("pip_wheels=/usr/share/python-wheels", f"pip_wheels={tmp_path / 'none'}").replace(
        "apt_archives=/var/cache/apt/archives", f"apt_archives={archives}")
    out = subprocess.run(["bash", "-c", f"set -euo pipefail\nVENVS={q(str(venvs))}\n" + text +
                          '\npip_wheel_wait $$\npython3 "$(compgen -G "$pip_wheels/pip-*.whl")/pip"\n'],
                         capture_output=True, text=True, timeout=20)
    assert out.returncode == 0, out.stderr
    assert out.stdout == "pip from the deb\n"
    assert [p.name for p in (venvs / ".deb-pip").iterdir()] == ["pip-99.1-py3-none-any.whl"]
