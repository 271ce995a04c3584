"""deploy/settings.py: every bad value is a one-line KitError naming the problem and the fix."""
from __future__ import annotations

import dataclasses

import pytest
from invoke import Config

from deploy.errors import KitError
from deploy.settings import Settings, build, describe, load


def error_of(raw, host=None) -> str:
    with pytest.raises(KitError) as exc:
        build(raw, host=host)
    message = str(exc.value)
    assert "\n" not in message and " — fix: " in message, message
    return message


def test_defaults_are_valid_and_derive_the_server_paths():
    s = build({})
    assert s == Settings(static_dir="static")  # detected: app/ has serve.py (module), no package
    assert (s.root, s.app_user, s.wsgi_module) == ("/srv/flasksample", "flasksample", "serve")
    assert build({"base_dir": "/opt/shop", "app_name": "shop"}).root == "/opt/shop"


def test_mutable_defaults_are_not_shared_between_instances():
    a, b = Settings(), Settings()
    assert a.domains == ["_"] and a.domains is not b.domains
    assert a.env == {} and a.env is not b.env


# -- unknown names ---------------------------------------------------------------------------

def test_unknown_setting_suggests_the_closest_name():
    assert error_of({"worker": 3}) == \
        "unknown setting 'worker' in fabric.yaml — fix: did you mean 'workers'?"


def test_unknown_setting_without_a_close_match_points_at_fab_settings():
    assert error_of({"zzz": 1}) == \
        "unknown setting 'zzz' in fabric.yaml — fix: see `fab settings` for the valid names"


def test_unknown_setting_in_a_host_override_names_the_host():
    assert error_of({"hosts": {"web2": {"domian": "x.org"}}}, host="web2") == \
        "unknown setting 'domian' in fabric.yaml hosts.web2 — fix: did you mean 'domains'?"


# -- types -----------------------------------------------------------------------------------

@pytest.mark.parametrize("name, value", [
    ("workers", "three"), ("workers", 2.5), ("workers", True), ("workers", [1]),
    ("keep_releases", "3.0"), ("app_name", 5), ("app_name", None), ("domains", 7),
    ("domains", ["a.org", 3]), ("env", ["A=1"]), ("python", True),
])
def test_wrong_type_is_refused_with_the_expected_type(name, value):
    message = error_of({name: value})
    assert message.startswith(f"setting '{name}' in fabric.yaml must be ")
    assert f"got {value!r}" in message
    assert f"fix: set {name}: " in message


def test_wrong_type_message_is_exact():
    assert error_of({"workers": "three"}) == (
        "setting 'workers' in fabric.yaml must be int, got 'three' — "
        "fix: set workers: 0 style value in fabric.yaml")


@pytest.mark.parametrize("value, expected", [("3", 3), (" 4 ", 4), ("0", 0), (7, 7)])
def test_numeric_strings_are_coerced_to_int(value, expected):
    assert build({"workers": value}).workers == expected


def test_negative_numeric_string_is_coerced_then_refused_by_the_range_check():
    assert error_of({"workers": "-1"}) == \
        "setting 'workers' in fabric.yaml is -1 — fix: use 0 (automatic) or a count from 1 to 64"


def test_malformed_numeric_string_is_a_kit_error_not_a_traceback():
    error_of({"workers": "--3"})


def test_domains_string_from_env_var_is_split_on_commas_and_spaces():
    assert build({"domains": "example.org, www.example.org  api.example.org"}).domains == \
        ["example.org", "www.example.org", "api.example.org"]


def test_env_values_become_strings():
    assert build({"env": {"DEBUG": 0, "NAME": "x"}}).env == {"DEBUG": "0", "NAME": "x"}


# -- values ----------------------------------------------------------------------------------

@pytest.mark.parametrize("raw, expected", [
    ({"app_name": "My App"}, "setting 'app_name' in fabric.yaml is 'My App', not a valid "
     "service/user name — fix: use lowercase letters, digits, '-' or '_', starting with a "
     "letter (max 32)"),
    ({"app_name": "a" * 33}, None),
    ({"wsgi": "serve"}, "setting 'wsgi' in fabric.yaml is 'serve', not module:attribute or "
     "module:factory() — fix: write it like serve:app or shop:create_app()"),
    ({"wsgi": "shop:create_app(1)"}, None),
    ({"wsgi": "shop:create_app()\n"}, None),
    ({"processes": {"Worker": "rq worker"}}, "setting 'processes' in fabric.yaml has a bad name "
     "'Worker' — fix: name each process with lowercase letters, digits and '-', like worker"),
    ({"processes": {"worker": " "}}, None),
    ({"release_command": "a\nb"}, None),
    ({"static_dir": "../etc"}, None),
    ({"process_manager": "runit"}, "setting 'process_manager' in fabric.yaml is 'runit' — "
     "fix: use 'systemd' or 'supervisor'"),
    ({"host_key_policy": "yes"}, "setting 'host_key_policy' in fabric.yaml is 'yes' — "
     "fix: use 'strict' or 'accept-new'"),
    ({"workers": 65}, "setting 'workers' in fabric.yaml is 65 — fix: use 0 (automatic) or a "
     "count from 1 to 64"),
    ({"keep_releases": 1}, "setting 'keep_releases' in fabric.yaml is 1 — fix: keep at least 2 "
     "so the previous release stays for rollback"),
    ({"health_timeout": 0}, None),
    ({"proxy_timeout": "0"}, None),
    ({"switch_batch": -1}, "setting 'switch_batch' in fabric.yaml is -1 — fix: use 0 (all at "
     "once) or a host count"),
    ({"domains": []}, "setting 'domains' in fabric.yaml is [] — fix: list host names like "
     "[example.org] or ['_']"),
    ({"domains": ["ok.org", "bad;name"]}, None),
    ({"client_max_body_size": "10 MB"}, "setting 'client_max_body_size' in fabric.yaml is "
     "'10 MB' — fix: use an nginx size like 10m"),
    ({"base_dir": "srv/app"}, "setting 'base_dir' in fabric.yaml is 'srv/app', not a plain "
     "absolute path — fix: use e.g. /srv/myapp (letters, digits, '.', '_', '-'; no '..', no "
     "trailing '/')"),
    ({"health_path": "healthz"}, None),
    ({"static_url": "static/"}, None),
    ({"env": {"BAD-NAME": "1"}}, "setting 'env' in fabric.yaml: 'BAD-NAME' is not a valid "
     "environment variable name — fix: use letters, digits and '_', not starting with a digit "
     "(e.g. SECRET_KEY)"),
    ({"app_dir": "no-such-dir"}, "setting 'app_dir' in fabric.yaml is 'no-such-dir', which is "
     "not a directory here — fix: point it at the directory holding your Flask app"),
    ({"wsgi": "nosuchmodule:app"}, None),
    ({"requirements": "missing.txt"}, None),
    ({"apt_packages": ["libpq-dev", "x; rm -rf /"]}, "setting 'apt_packages' in fabric.yaml has "
     "'x; rm -rf /', not a Debian package name — fix: list package names like libpq-dev "
     "(lowercase letters, digits, '+', '-', '.')"),
    ({"apt_packages": ["libpq-dev\n"]}, None),
    ({"apt_packages": ["-o"]}, None),
    ({"apt_lock_wait": -1}, "setting 'apt_lock_wait' in fabric.yaml is -1 — fix: use 0 to 3600 seconds"),
])
def test_bad_values_are_one_line_errors_naming_problem_and_fix(raw, expected):
    message = error_of(raw)
    name = next(iter(raw))
    assert message.startswith("setting '") and name in message.split(" — fix: ")[0]
    if expected is not None:
        assert message == expected


def test_paired_checks_name_both_settings():
    assert error_of({"proxy_timeout": "0"}) == ("setting 'health_timeout' in fabric.yaml and "
                                               "proxy_timeout must be at least 1 second — fix: raise them")
    assert error_of({"static_url": "static/"}) == ("setting 'static_url' in fabric.yaml is 'static/' "
                                                  "— fix: start and end it with '/', e.g. /static/")


def test_wsgi_module_must_exist_in_app_dir():
    message = error_of({"wsgi": "nosuchmodule:app"})
    assert "names module 'nosuchmodule', but " in message and "nosuchmodule.py does not exist" in message


def test_app_dir_needs_requirements_but_no_gunicorn_conf(tmp_path):
    (tmp_path / "serve.py").write_text("app = None\n")
    assert "setting 'requirements' in fabric.yaml is 'requirements.txt', missing in" in \
        error_of({"app_dir": str(tmp_path)})
    (tmp_path / "requirements.txt").write_text("gunicorn==27.0.1\n")
    assert build({"app_dir": str(tmp_path)}).local_app_dir == tmp_path


def test_wsgi_may_name_a_package(tmp_path):
    (tmp_path / "shop").mkdir()
    (tmp_path / "shop" / "__init__.py").write_text("")
    (tmp_path / "gunicorn.conf.py").write_text("")
    (tmp_path / "requirements.txt").write_text("gunicorn\n")
    assert build({"app_dir": str(tmp_path), "wsgi": "shop:create"}).wsgi_module == "shop"


@pytest.mark.parametrize("domains", [["_"], ["example.org", "www.example.org"], ["*.example.org"]])
def test_valid_domains(domains):
    assert build({"domains": domains}).domains == domains


# -- per-host overrides ----------------------------------------------------------------------

RAW = {"workers": 3, "domains": ["example.org"],
       "hosts": {"web2": {"workers": 5}, "web3": {"workers": "7", "keep_releases": 9}}}


def test_host_override_applies_only_to_that_host():
    assert build(RAW, host="web2").workers == 5
    assert build(RAW, host="web3").workers == 7 and build(RAW, host="web3").keep_releases == 9
    assert build(RAW, host="web1").workers == 3
    assert build(RAW).workers == 3
    assert build(RAW, host="web2").domains == ["example.org"]


def test_host_override_is_not_mutated_into_the_raw_mapping():
    raw = {"workers": 3, "hosts": {"web2": {"workers": 5}}}
    build(raw, host="web2")
    assert raw == {"workers": 3, "hosts": {"web2": {"workers": 5}}}


def test_hosts_must_be_a_mapping():
    assert error_of({"hosts": ["web1"]}) == ("'flasksample.hosts' in fabric.yaml must map host "
                                            "names to settings — fix: write hosts: {web1: {workers: 2}}")


def test_one_host_override_must_be_a_mapping():
    assert error_of({"hosts": {"web2": 5}}, host="web2") == \
        "'fabric.yaml hosts.web2' must be a mapping of settings — fix: fix its indentation"


def test_wrong_type_in_host_override_names_the_host():
    assert error_of({"hosts": {"web2": {"workers": "many"}}}, host="web2").startswith(
        "setting 'workers' in fabric.yaml hosts.web2 must be int, got 'many'")


def test_bad_value_in_host_override_names_the_host():
    assert "hosts.web2" in error_of({"workers": 2, "hosts": {"web2": {"workers": 100}}}, host="web2")


# -- load() from a Fabric/Invoke config ------------------------------------------------------

def test_load_from_an_invoke_config_with_overrides():
    config = Config(overrides={"flasksample": {"workers": "4", "domains": ["a.org"],
                                               "hosts": {"web2": {"workers": 6}}}})
    assert load(config).workers == 4
    assert load(config, host="web2").workers == 6
    assert load(config, host="web2").domains == ["a.org"]


def test_load_without_a_flasksample_section_gives_defaults():
    assert load(Config()) == Settings(static_dir="static")


def test_load_refuses_a_non_mapping_section():
    with pytest.raises(KitError, match="'flasksample' in fabric.yaml must be a mapping"):
        load({"flasksample": "workers=3"})


# -- describe() ------------------------------------------------------------------------------

def test_describe_lists_every_setting_with_default_and_doc():
    rows = describe()
    assert [name for name, _, _ in rows] == [f.name for f in dataclasses.fields(Settings)
                                             if f.name != "project_dir"]
    defaults = Settings()
    for name, default, text in rows:
        assert default == getattr(defaults, name), name
        assert text and "\n" not in text, name
    assert ("workers", 0, "gunicorn workers; 0 = the app's gunicorn.conf.py, else 2 x cores + 1") in rows
    assert ("process_manager", "systemd", "who supervises gunicorn: 'systemd' or 'supervisor'") in rows


def test_describe_defaults_are_copies():
    rows = dict((n, d) for n, d, _ in describe())
    rows["domains"].append("mutated")
    assert Settings().domains == ["_"]


def test_every_host_block_is_validated_not_only_this_hosts():
    raw = {"hosts": {"web-1": {"wrokers": 5}}}
    assert "hosts.web-1" in error_of(raw, host="web1") and "did you mean 'workers'?" in error_of(raw, host="web1")
    assert "hosts.web2" in error_of({"hosts": {"web2": {"base_dir": "/srv/x'y"}}}, host="web1")
    assert "hosts.web2" in error_of({"hosts": {"web2": ["workers"]}})
    assert build({"hosts": {"web2": {"workers": 5}}}, host="web1").workers == 0


def test_host_name_of_a_host_string():
    from deploy.settings import host_name

    assert [host_name(h) for h in ("web1", "deploy@web1", "deploy@web1:2222", "10.0.0.1:22", "::1")] \
        == ["web1", "web1", "web1", "10.0.0.1", "::1"]
