"""deploy/steps: plans from facts — bare host, converged host (idempotence), drift, manager switch."""
from __future__ import annotations

import hashlib

import pytest

from deploy import layout, templates
from deploy.facts import MISSING
from deploy.managers import supervisor, systemd
from deploy.tasks.setup import apply_script, plan
from deploy.shell import RUN_SCRATCH, script, write_file
from deploy.steps import ordered
from deploy.steps.packages import install_lines

BARE_ANSWER = {"pkg": MISSING, "user": MISSING, "dir": MISSING, "sha": MISSING,
               "link": MISSING, "exists": "no", "enabled": "", "active": "", "procunits": ""}

SERVICE = "/etc/systemd/system/flasksample.service"
SOCKET = "/etc/systemd/system/flasksample.socket"
SUP_CONF = "/etc/supervisor/conf.d/flasksample.conf"
SITE = "/etc/nginx/sites-available/flasksample.conf"
TMPFILES = "/etc/tmpfiles.d/flasksample-run.conf"

K = RUN_SCRATCH  # this run's scratch directory on the server


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def probes(s):
    return [p for st in ordered(s) for p in st.probes(s)]


def bare(s) -> dict:
    """What the probe script answers on a fresh Debian host."""
    return {p.key: BARE_ANSWER[p.kind] for p in probes(s)}


def converged(s) -> dict:
    """What the probe script answers on a host in exactly the wanted state (written out by hand)."""
    contents = {SERVICE: templates.render("systemd/app.service.j2", s),
                SOCKET: templates.render("systemd/app.socket.j2", s),
                SUP_CONF: templates.render("supervisor/app.conf.j2", s),
                TMPFILES: templates.render("supervisor/tmpfiles.conf.j2", s),
                SITE: templates.render("nginx/site.conf.j2", s)}
    dirs = {"/srv/flasksample": "root:root:755", "/srv/flasksample/releases": "root:root:755",
            "/srv/flasksample/venvs": "root:root:755",
            "/srv/flasksample/shared": "root:flasksample:750",
            "/srv/flasksample/.kit": "root:root:700"}
    answer = {}
    for p in probes(s):
        answer[p.key] = {
            "pkg": lambda a: "installed",
            "user": lambda a: "flasksample:/srv/flasksample:/usr/sbin/nologin",
            "dir": lambda a: dirs[a],
            "sha": lambda a: sha(contents[a]),
            "link": lambda a: SITE,
            "exists": lambda a: "yes" if a.endswith("/.complete") else "no",  # the venv
            "enabled": lambda a: "enabled",
            "active": lambda a: "active",
            "procunits": lambda a: "",
        }[p.kind](p.arg)
    return answer


def by_step(changes):
    return {ch.step: ch for ch in changes}


# -- order and probes ------------------------------------------------------------------------

def test_setup_steps_in_order(make):
    assert [st.name for st in ordered(make())] == \
        ["user", "directories", "venv", "packages", "systemd-units", "nginx-site", "venv-done"]
    assert [st.name for st in ordered(make(process_manager="supervisor"))] == \
        ["user", "directories", "venv", "packages", "supervisor-units", "nginx-site", "venv-done"]


def test_probes_cover_the_other_manager(s, make):
    keys = {p.key for p in probes(s)}
    assert {f"sha:{SERVICE}", f"sha:{SOCKET}", f"exists:{SUP_CONF}", f"sha:{SITE}",
            "enabled:flasksample.socket", "active:flasksample.service"} <= keys
    keys = {p.key for p in probes(make(process_manager="supervisor"))}
    assert {f"sha:{SUP_CONF}", f"exists:{SERVICE}", "pkg:supervisor", "active:supervisor"} <= keys


# -- bare host: everything changes -----------------------------------------------------------

@pytest.mark.parametrize("manager", ["systemd", "supervisor"])
def test_bare_host_changes_every_step(make, manager):
    s = make(process_manager=manager)
    changes = plan(s, bare(s))
    assert all(ch.changed for ch in changes), [ch.step for ch in changes if not ch.changed]
    assert all(ch.summary != "unchanged" for ch in changes)


def test_bare_host_plan_lines(s):
    steps = by_step(plan(s, bare(s)))
    assert steps["packages"].lines == install_lines(["nginx", "python3-pip-whl", "curl"], 300)
    assert steps["packages"].summary == "install nginx python3-pip-whl curl"
    assert steps["user"].lines == [
        "useradd --system --user-group --home-dir /srv/flasksample --no-create-home "
        "--shell /usr/sbin/nologin flasksample"]
    assert steps["directories"].lines == [
        "install -d -o root -g root -m 755 /srv/flasksample",
        "install -d -o root -g root -m 755 /srv/flasksample/releases",
        "install -d -o root -g root -m 755 /srv/flasksample/venvs",
        "install -d -o root -g flasksample -m 750 /srv/flasksample/shared",
        "install -d -o root -g root -m 700 /srv/flasksample/.kit",
    ]
    sock, svc = (templates.render("systemd/app.socket.j2", s),
                 templates.render("systemd/app.service.j2", s))
    assert steps["systemd-units"].lines == [
        f"rm -rf {K}/stage && mkdir -p {K}/stage",
        write_file(f"{K}/stage/flasksample.socket", sock),
        write_file(f"{K}/stage/flasksample.service", svc),
        systemd.verify(s, [f"{K}/stage/flasksample.socket", f"{K}/stage/flasksample.service"]),
        write_file(SOCKET, sock),
        write_file(SERVICE, svc),
        f"rm -rf {K}/stage",
        "systemctl daemon-reload",
        "systemctl enable -q flasksample.socket flasksample.service",
        "systemctl start flasksample.socket",
    ]
    assert steps["nginx-site"].lines[-1] == "systemctl enable -q nginx"
    assert "nginx -t" in " ".join(steps["nginx-site"].lines)


def test_bare_host_supervisor_plan(make):
    s = make(process_manager="supervisor")
    steps = by_step(plan(s, bare(s)))
    assert steps["packages"].lines == install_lines(["nginx", "python3-pip-whl", "curl", "supervisor"], 300)
    conf = templates.render("supervisor/app.conf.j2", s)
    tmpfiles = templates.render("supervisor/tmpfiles.conf.j2", s)
    assert steps["supervisor-units"].lines == [
        f"rm -rf {K}/stage && mkdir -p {K}/stage",
        write_file(f"{K}/stage/flasksample.conf", conf),
        write_file(f"{K}/stage/flasksample-run.conf", tmpfiles),
        supervisor.verify(s, [f"{K}/stage/flasksample.conf", f"{K}/stage/flasksample-run.conf"]),
        write_file(SUP_CONF, conf),
        write_file(TMPFILES, tmpfiles),
        f"rm -rf {K}/stage",
        "systemctl enable -q supervisor",
        "systemctl start supervisor",
        "for i in $(seq 50); do supervisorctl pid >/dev/null 2>&1 && break; sleep 0.1; done",
        f"systemd-tmpfiles --create {TMPFILES}",
        "usermod -a -G flasksample www-data && systemctl reload-or-restart nginx",
        "supervisorctl reread >/dev/null && supervisorctl update >/dev/null",
    ]


def test_install_lines_wait_for_the_lock_then_install_the_missing_packages():
    lines = install_lines(["nginx", "curl"], 45)
    assert lines[0] == f"APT_LOG={K}/apt.log"
    assert "apt_wait_for_lock()" in lines[1] and "apt_install()" in lines[1]
    assert lines[-1] == "apt_install 45 nginx curl"


def test_apt_packages_are_added_once_and_only_when_missing(make):
    s = make(apt_packages=["libpq-dev", "curl", "build-essential"], apt_lock_wait=10)
    f = converged(s)
    f["pkg:libpq-dev"] = MISSING
    f["pkg:build-essential"] = MISSING
    ch = by_step(plan(s, f))["packages"]
    assert ch.summary == "install libpq-dev build-essential"
    assert ch.lines[-1] == "apt_install 10 libpq-dev build-essential"


@pytest.mark.parametrize("manager", ["systemd", "supervisor"])
def test_bare_host_apply_script_parses(make, manager, syntax_ok):
    s = make(process_manager=manager)
    text = apply_script(plan(s, bare(s)))
    result = syntax_ok(text)
    assert result.returncode == 0, result.stderr
    assert text.count('echo "::step ') == 7  # shell.step's markers (lib.sh, in it, has its own)


# -- converged host: nothing changes (idempotence) -------------------------------------------

@pytest.mark.parametrize("manager", ["systemd", "supervisor"])
def test_wanted_state_plans_nothing(make, manager):
    s = make(process_manager=manager)
    changes = plan(s, converged(s))
    assert [(ch.step, ch.summary, ch.lines) for ch in changes] == \
        [(ch.step, "unchanged", []) for ch in changes]
    assert apply_script(changes) == apply_script([])


def test_wanted_state_for_custom_settings_plans_nothing(make):
    s = make(app_name="shop", base_dir="/opt/shop", workers=3, domains=["shop.example"])
    f = bare(s)
    # the same answers as converged(), for paths of this app
    for key in f:
        kind, arg = key.split(":", 1)
        f[key] = {"pkg": "installed", "user": "shop:/opt/shop:/usr/sbin/nologin",
                  "link": layout.nginx_site(s), "enabled": "enabled", "active": "active",
                  "exists": "yes" if arg.endswith("/.complete") else "no",
                  "procunits": ""}.get(kind, f[key])
    for path, owner, mode in [("/opt/shop", "root:root", "755"), ("/opt/shop/releases", "root:root", "755"),
                              ("/opt/shop/venvs", "root:root", "755"),
                              ("/opt/shop/shared", "root:shop", "750"), ("/opt/shop/.kit", "root:root", "700")]:
        f[f"dir:{path}"] = f"{owner}:{mode}"
    for path, tpl in [("/etc/systemd/system/shop.service", "systemd/app.service.j2"),
                      ("/etc/systemd/system/shop.socket", "systemd/app.socket.j2"),
                      ("/etc/nginx/sites-available/shop.conf", "nginx/site.conf.j2")]:
        f[f"sha:{path}"] = sha(templates.render(tpl, s))
    assert not any(ch.changed for ch in plan(s, f))


# -- drift -----------------------------------------------------------------------------------

def test_changed_service_hash_rewrites_verifies_and_reloads(s):
    f = converged(s)
    f[f"sha:{SERVICE}"] = "0" * 64  # hand-edited or outdated unit
    steps = by_step(plan(s, f))
    assert [name for name, ch in steps.items() if ch.changed] == ["systemd-units"]
    sock, svc = (templates.render("systemd/app.socket.j2", s),
                 templates.render("systemd/app.service.j2", s))
    assert steps["systemd-units"].lines == [
        f"rm -rf {K}/stage && mkdir -p {K}/stage",
        write_file(f"{K}/stage/flasksample.socket", sock),
        write_file(f"{K}/stage/flasksample.service", svc),
        systemd.verify(s, [f"{K}/stage/flasksample.socket", f"{K}/stage/flasksample.service"]),
        write_file(SERVICE, svc),
        f"rm -rf {K}/stage",
        "systemctl daemon-reload",
        "systemctl restart flasksample.service",
    ]
    assert steps["systemd-units"].summary == f"write {SERVICE}"


@pytest.mark.parametrize("gunicorn_there", [True, False])
def test_verify_checks_the_staged_units_without_editing_their_text(tmp_path, make, run_bash, gunicorn_there):
    """Before the first deploy (no gunicorn yet) the staged service is one rendered with
    ExecStart=/bin/true (not a sed over the unit's text); otherwise the real one."""
    root = tmp_path / "srv"
    s = make(base_dir=str(root))
    if gunicorn_there:
        (root / "current/.venv/bin").mkdir(parents=True)
        (root / "current/.venv/bin/gunicorn").write_text("")
        (root / "current/.venv/bin/gunicorn").chmod(0o755)
    staged = [str(tmp_path / "a.socket"), str(tmp_path / "a.service")]
    real = templates.render("systemd/app.service.j2", s)
    for path, text in zip(staged, ("[Socket]\n", real)):
        open(path, "w").write(text)
    stub = f'systemd-analyze() {{ echo "$*" > {tmp_path}/args; }}\n'
    result = run_bash(script(stub + systemd.verify(s, staged)))
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "args").read_text() == f"verify {staged[0]} {staged[1]}\n"
    service = (tmp_path / "a.service").read_text()
    if gunicorn_there:
        assert service == real
    else:
        assert service == real.replace(real.split("ExecStart=")[1].split("\n")[0], "/bin/true")


def test_a_rejected_unit_is_one_error_line(tmp_path, s, run_bash):
    stub = 'systemd-analyze() { echo "bad line 3"; return 1; }\n'
    result = run_bash(script(stub + systemd.verify(s, ["/x.socket", "/x.service"]).replace(
        "if [ ! -x", "if false && [ ! -x")))
    assert result.returncode == 1
    assert result.stdout.splitlines() == ["bad line 3", "::error systemd-analyze verify rejected the unit — "
                                          "correct the settings it names (the lines above) and run fab setup again"]


def test_changed_socket_restarts_socket_and_service(s):
    f = converged(s)
    f[f"sha:{SOCKET}"] = MISSING
    lines = by_step(plan(s, f))["systemd-units"].lines
    assert lines[-4:] == [
        f"rm -rf {K}/stage",
        "systemctl daemon-reload",
        "systemctl stop flasksample.service flasksample.socket",
        "systemctl start flasksample.socket flasksample.service",
    ]
    assert write_file(SOCKET, templates.render("systemd/app.socket.j2", s)) in lines
    assert write_file(SERVICE, templates.render("systemd/app.service.j2", s)) not in lines


def test_stopped_units_are_started_without_rewriting(s):
    f = converged(s)
    f["active:flasksample.socket"] = "inactive"
    f["enabled:flasksample.service"] = "disabled"
    ch = by_step(plan(s, f))["systemd-units"]
    assert ch.lines == ["systemctl enable -q flasksample.socket flasksample.service",
                        "systemctl start flasksample.socket"]
    assert ch.summary == "systemctl enable -q flasksample.socket flasksample.service; " \
                         "systemctl start flasksample.socket"


def test_changed_supervisor_conf_rereads_and_updates(make):
    s = make(process_manager="supervisor")
    f = converged(s)
    f[f"sha:{SUP_CONF}"] = "0" * 64
    lines = by_step(plan(s, f))["supervisor-units"].lines
    assert "systemd-tmpfiles" not in " ".join(lines)
    assert lines[-2:] == ["usermod -a -G flasksample www-data && systemctl reload-or-restart nginx",
                          "supervisorctl reread >/dev/null && supervisorctl update >/dev/null"]


def test_edited_nginx_site_is_rewritten_behind_nginx_t(s):
    from deploy.steps.site import apply_lines, reload_line, swap_lines
    f = converged(s)
    f[f"sha:{SITE}"] = "0" * 64
    ch = by_step(plan(s, f))["nginx-site"]
    content = templates.render("nginx/site.conf.j2", s)
    reload = reload_line()
    assert ch.lines == apply_lines(s, content) == swap_lines(s, content) + [reload]
    assert reload.startswith("(\n") and reload.endswith(
        '\nnginx_reload "$NGINX_PID" "$WAIT" nginx_closing || [ $? = 124 ]\n\n)')


def test_the_site_reload_returns_once_the_old_workers_stopped_accepting(tmp_path, run_bash):
    """The reload program inside setup's script: nginx reloads (a stand-in systemctl), a master
    without workers leaves nothing to wait for, and the run's scratch dir outlives it."""
    from deploy.shell import script
    from deploy.steps.site import reload_line
    (tmp_path / "systemctl").write_text('#!/bin/sh\necho "systemctl $*"\n')
    (tmp_path / "systemctl").chmod(0o755)
    (tmp_path / "nginx.pid").write_text("999999\n")
    text = script(reload_line().replace("/run/nginx.pid", str(tmp_path / "nginx.pid")),
                  'test -d "$KIT_TMP" && echo done').replace("/run/flasksample-kit", str(tmp_path / "kit"))
    result = run_bash(f"PATH={tmp_path}:$PATH\n" + text)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["systemctl is-active -q nginx", "systemctl reload nginx", "done"]


def test_default_site_back_means_rewrite(s):
    f = converged(s)
    f["exists:/etc/nginx/sites-enabled/default"] = "yes"
    ch = by_step(plan(s, f))["nginx-site"]
    assert "rm -f /etc/nginx/sites-enabled/default" in ch.lines


def test_stopped_nginx_is_only_started(s):
    f = converged(s)
    f["active:nginx"] = "failed"
    ch = by_step(plan(s, f))["nginx-site"]
    assert (ch.lines, ch.summary) == (["systemctl start nginx"], "start nginx")


def test_nginx_apply_restores_the_previous_site_when_nginx_t_fails(s):
    from deploy.shell import fail
    from deploy.steps.site import apply_lines
    gate = apply_lines(s, "x")[5]
    backup = f"{K}/nginx-backup"
    assert gate.startswith(f"if ! nginx -t >{K}/nginx-test.log 2>&1; then ")
    for live, name in ((SITE, "site"), ("/etc/nginx/sites-enabled/flasksample.conf", "enabled"),
                       ("/etc/nginx/sites-enabled/default", "default")):
        assert f"rm -f {live}; cp -a {backup}/{name} {live} 2>/dev/null || true;" in gate
    assert gate.endswith(fail("nginx -t rejected the new site; the previous config was put back",
                              "read the lines above; fix and run again") + "; fi")


def test_missing_package_only(make):
    s = make(process_manager="supervisor")
    f = converged(s)
    f["pkg:supervisor"] = "config-files"
    ch = by_step(plan(s, f))["packages"]
    assert (ch.summary, ch.lines) == ("install supervisor", install_lines(["supervisor"], 300))


def test_wrong_directory_mode_is_fixed_alone(s):
    f = converged(s)
    f["dir:/srv/flasksample/shared"] = "root:root:755"
    ch = by_step(plan(s, f))["directories"]
    assert ch.lines == ["install -d -o root -g flasksample -m 750 /srv/flasksample/shared"]


# -- switching process manager ---------------------------------------------------------------

def test_switch_to_supervisor_removes_the_systemd_units_first(make):
    s = make(process_manager="supervisor")
    f = converged(s)
    f[f"exists:{SERVICE}"] = "yes"
    ch = by_step(plan(s, f))["supervisor-units"]
    assert ch.lines == [
        "systemctl disable -q --now flasksample.service flasksample.socket 2>/dev/null || true",
        f"rm -f {SERVICE} {SOCKET}",
        "systemctl daemon-reload",
    ]
    assert ch.summary == f"remove systemd config ({SERVICE})"


def test_switch_to_systemd_removes_the_supervisor_program_first(s):
    f = converged(s)
    f[f"exists:{SUP_CONF}"] = "yes"
    ch = by_step(plan(s, f))["systemd-units"]
    assert ch.lines == [
        "supervisorctl stop flasksample >/dev/null 2>&1 || true",
        f"rm -f {SUP_CONF} {TMPFILES}",
        "supervisorctl reread >/dev/null 2>&1 && supervisorctl update >/dev/null 2>&1 || true",
    ]


def test_switch_on_a_fresh_manager_removes_then_installs(make):
    s = make(process_manager="supervisor")
    f = bare(s)
    f[f"exists:{SERVICE}"] = "yes"
    lines = by_step(plan(s, f))["supervisor-units"].lines
    assert lines[:3] == systemd.remove(s)
    assert lines[3] == f"rm -rf {K}/stage && mkdir -p {K}/stage"


# -- P5: existing accounts and vendor units are never adopted ---------------------------------

@pytest.mark.parametrize("answer", ["flasksample:/home/flasksample:/bin/bash",
                                    "flasksample:/srv/flasksample:/bin/bash",
                                    "flasksample:/var/www:/usr/sbin/nologin"])
def test_an_existing_account_the_kit_did_not_make_is_refused(s, answer):
    from deploy.errors import KitError

    f = bare(s)
    f["user:flasksample"] = answer
    with pytest.raises(KitError, match="already exists on the host and is not one the kit made"):
        plan(s, f)


def test_the_kits_own_account_is_kept(s):
    f = bare(s)
    f["user:flasksample"] = "flasksample:/srv/flasksample:/usr/sbin/nologin"
    assert not {ch.step: ch for ch in plan(s, f)}["user"].changed


def test_a_vendor_unit_of_the_same_name_is_refused(s):
    from deploy.errors import KitError

    f = bare(s)
    f["exists:/usr/lib/systemd/system/flasksample.service"] = "yes"
    with pytest.raises(KitError, match="a service the system already has"):
        plan(s, f)


# -- the first venv, built while apt installs ------------------------------------------------

def test_the_venv_build_starts_after_the_users_apt_packages(make):
    s = make(apt_packages=["libpq-dev"])
    steps = by_step(plan(s, bare(s)))
    assert "apt_install 300 python3-pip-whl libpq-dev" in steps["venv"].lines  # build deps first
    assert steps["packages"].summary == "install nginx python3-pip-whl curl libpq-dev"


def test_setup_builds_the_venv_deploy_would_use_in_the_background(s):
    from deploy import layout, package
    from deploy.steps import venv
    steps = by_step(plan(s, bare(s)))
    req_hash = package.build(s).req_hash  # what the first deploy looks for
    assert steps["venv"].summary == f"build venv {req_hash} in the background"
    start = "\n".join(steps["venv"].lines)
    # only its pip is missing: the build waits for it, installed in the packages step's one apt run
    assert "apt_install" not in start and "python3-pip-whl" in steps["packages"].summary
    assert f"{{ pip_wheel_wait $$ && venv_ensure {layout.venv_dir(s, req_hash)} " in start
    assert start.endswith("kit_venv_pid=$!")
    assert 'wait "$kit_venv_pid"' in "\n".join(steps["venv-done"].lines)

    f = converged(s)
    assert f[f"exists:{layout.venv_dir(s, req_hash)}/.complete"] == "yes"
    assert not venv.VenvStart().plan(s, f).changed and not venv.VenvDone().plan(s, f).changed


# -- reading the facts ------------------------------------------------------------------------

def test_the_templates_are_rendered_while_the_host_answers(s, monkeypatch):
    """read_facts plans once with no facts while its one round trip runs (jinja2 compiles the
    templates then, not after the answers came); a failure of either still reaches the caller."""
    import threading

    from deploy import facts
    from deploy.errors import KitError
    from deploy.runner import Outcome
    from deploy.tasks import setup as provision

    planned = threading.Event()
    real_plan = provision.plan

    def plan_and_tell(*a, **kw):
        result = real_plan(*a, **kw)
        planned.set()
        return result

    class Host:
        def __init__(self, error=None):
            self.error, self.sent = error, []

        def must(self, text, what):
            self.sent.append(text)
            assert planned.wait(10), "the plan waited for the host's answer"
            if self.error:
                raise self.error
            return Outcome(True, 0, ["user:flasksample\tmissing"])

    monkeypatch.setattr(provision, "plan", plan_and_tell)
    host = Host()
    assert provision.read_facts(host, s)["user:flasksample"] == MISSING
    assert host.sent == [facts.read_script([p for st in ordered(s) for p in st.probes(s)])]
    planned.clear()
    with pytest.raises(KitError, match="unreachable"):
        provision.read_facts(Host(KitError("web1: unreachable", "check")), s)
