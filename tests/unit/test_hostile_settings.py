"""S1/S3: no setting value reaches a shell, unit, supervisor or nginx file unless it matches
a strict allow-list in full. Every string setting is fed hostile values (newlines — also a
single trailing one —, quotes, `$()`, `;`, `{`, `%`, `..`): each must be refused before any
connection; and everything the kit renders from the values it does accept must stay clean.
"""
from __future__ import annotations

import dataclasses

import pytest

from deploy import envfile, layout, release, service, settings, templates
from deploy.errors import KitError

MARK = "PWNED"
PAYLOADS = [
    "x\n[Service]\nExecStartPre=+/bin/sh -c 'id > /tmp/PWNED'",
    "x'; touch /tmp/PWNED; echo '",
    "x$(touch /tmp/PWNED)",
    "x`touch /tmp/PWNED`",
    "x; } location /PWNED/ { alias /etc/; }",
    "x\n",
    "%H-PWNED",
    "../../PWNED",
    "x PWNED",
    "x\"PWNED",
]
# legitimate values of each string setting, with one hostile value built from each payload
STRING_SETTINGS = {
    "app_name": "shop", "wsgi": "serve:app", "requirements": "requirements.txt",
    "base_dir": "/srv/shop", "health_path": "/healthz", "static_url": "/static/",
    "static_dir": "static", "client_max_body_size": "10m", "python": "python3",
    "tls": "off", "acme_email": "ops@example.org", "acme_server": "staging",
}
NOT_ON_SERVER = {"app_dir", "process_manager", "host_key_policy", "upstream_address",
                 "acme_ca_bundle", "tls_cert", "tls_key"}  # local files: read here, checked
# Commands the user runs on purpose, as the app user under the unit's sandbox: quoted whole
# (shlex.quote); only line breaks, NUL and excess length are refused (test_settings.py).
COMMANDS = {"release_command"}


def hostile(good: str, payload: str) -> str:
    return good + payload if not good.startswith("/") else good + "/" + payload


def refused(raw) -> bool:
    try:
        settings.build(raw)
    except KitError as e:
        assert "\n" not in str(e)
        return True
    return False


def test_every_string_setting_is_listed_here():
    strings = {f.name for f in settings.FIELDS.values() if f.type in ("str", str)}
    assert strings - NOT_ON_SERVER - COMMANDS <= set(STRING_SETTINGS), \
        "a new string setting needs a fullmatch rule in settings._check and a line here"


@pytest.mark.parametrize("name", sorted(STRING_SETTINGS))
@pytest.mark.parametrize("payload", PAYLOADS)
def test_hostile_string_values_are_refused(name, payload):
    assert refused({name: hostile(STRING_SETTINGS[name], payload)})
    assert refused({name: payload})


@pytest.mark.parametrize("payload", PAYLOADS)
def test_hostile_list_and_env_values_are_refused(payload):
    assert refused({"domains": ["example.org", "x" + payload]})
    assert refused({"shared_dirs": ["uploads", "x" + payload]})
    assert refused({"health_allow": ["10.0.0.0/8", "10.1.2.3" + payload]})
    assert refused({"env": {"X" + payload: "1"}})
    if "\n" in payload:
        assert refused({"env": {"LOG": payload}})


@pytest.mark.parametrize("raw", [
    {"shared_dirs": ["data", "data/cache"]}, {"shared_dirs": ["data/cache", "data"]},
    {"shared_dirs": ["a", "a"]}, {"shared_dirs": ["../shared"]}, {"shared_dirs": ["a/../b"]},
    {"shared_dirs": [".venv"]}, {"shared_dirs": ["/etc"]}, {"static_dir": "../../shared"},
    {"static_url": "/"}, {"static_url": "/s/../"}, {"base_dir": "/"}, {"base_dir": "/etc/app"},
    {"base_dir": "/srv"}, {"base_dir": "/srv/app/"}, {"base_dir": "/srv/../etc"},
    {"health_path": "/h/../x"}, {"requirements": "/etc/passwd"}, {"python": "python3; id"},
    {"domains": ["*example.org"]}, {"client_max_body_size": "1" * 20},
    {"env": {"LISTEN_FDS": "3"}}, {"app_name": "flasksample\n"}, {"wsgi": "serve:app\n"},
])
def test_unsafe_paths_and_names_are_refused(raw):
    assert refused(raw)


@pytest.mark.parametrize("raw", [
    {"shared_dirs": ["data", "cache", "data2/x"]}, {"static_dir": "web/static"},
    {"static_url": "/assets/v1/"}, {"base_dir": "/srv/shop", "app_name": "shop"},
    {"base_dir": "/opt/shop"}, {"health_path": "/"}, {"health_path": "/healthz?deep=1&x=2"},
    {"python": "python3.12"}, {"python": "/usr/bin/python3"}, {"domains": ["*.example.org", "a-b.c"]},
    {"env": {"LOG_LEVEL": "info; $(x) \"q\" 'q'"}}
])
def test_ordinary_values_pass(raw):
    assert not refused(raw)


def rendered(s) -> list[str]:
    """Every file and script the kit builds from settings."""
    out = [templates.render(t, s) for t in ("systemd/app.service.j2", "systemd/app.socket.j2",
                                             "supervisor/app.conf.j2", "supervisor/tmpfiles.conf.j2",
                                             "nginx/site.conf.j2")]
    out += [service.status_script(s), service.restart_script(s), envfile.list_script(s),
            envfile.change_script(s, "me"), envfile.payload(s, block=s.env),
            release.list_script(s)]
    rel = "20261126-230000.000-aaaaaaa"
    return out + [release.switch_script(s, rel, "me"), release.prepare_script(s, rel, "h", "me", False)]


@pytest.mark.parametrize("name", sorted(STRING_SETTINGS))
@pytest.mark.parametrize("payload", PAYLOADS)
def test_no_hostile_value_reaches_a_rendered_file(name, payload):
    """Were a hostile value ever accepted, it would show up in what the kit renders."""
    try:
        s = settings.build({name: hostile(STRING_SETTINGS[name], payload)})
    except KitError:
        return
    for sm in (s, dataclasses.replace(s, process_manager="supervisor")):
        assert not any(MARK in text for text in rendered(sm))  # pragma: no cover


def test_accepted_values_render_no_extra_lines_or_quotes():
    """The most unusual values the rules accept still cannot add a line, a quote or a directive:
    every file has as many lines as with plain values, and no value brings a special character."""
    odd = settings.build({"app_name": "a_b-c", "base_dir": "/srv/a.b_c-d", "static_dir": "s.t/u_v",
                          "static_url": "/a.b~c/", "health_path": "/h.z~y?x=1&y=2",
                          "shared_dirs": ["u.p/l-d"], "domains": ["*.ex-ample.org", "_"],
                          "client_max_body_size": "999m", "python": "/usr/bin/python3.11"})
    plain = settings.build({"app_name": "abc", "base_dir": "/srv/abc", "static_dir": "static",
                            "static_url": "/s/", "health_path": "/h", "shared_dirs": ["up"],
                            "domains": ["a.org", "_"]})
    for pm in ("systemd", "supervisor"):
        a = rendered(dataclasses.replace(odd, process_manager=pm))
        b = rendered(dataclasses.replace(plain, process_manager=pm))
        assert [t.count("\n") for t in a] == [t.count("\n") for t in b]
    for value in (odd.app_name, odd.root, odd.static_dir, odd.static_url, odd.python,
                  *odd.shared_dirs, *odd.domains, odd.client_max_body_size):
        assert not set(value) & set(" '\"\\;{}$`%\n")


@pytest.mark.parametrize("arg", ["FOO\n=x", "FOO\n", "FOO =x", "FOO;id=x", "LISTEN_FDS=3"])
def test_env_set_refuses_bad_names(arg):
    with pytest.raises(KitError):
        envfile.parse_argument(arg)


@pytest.mark.parametrize("name", ["root", "www-data", "deploy", "ssh", "nginx", "cron",
                                  "flasksample-kit", "shop-preflight", "systemd-journald", "nobody"])
def test_app_name_may_not_be_a_system_or_kit_name(name):
    with pytest.raises(KitError, match="already uses"):
        settings.build({"app_name": name})


def test_the_health_endpoint_answers_only_the_host_and_health_allow():
    site = templates.render("nginx/site.conf.j2", settings.build({"health_allow": ["10.9.0.0/16"]}))
    geo = site[site.index("geo $flasksample_health_client {"):site.index("}", site.index("geo "))]
    assert [l.strip() for l in geo.splitlines()[1:]] == ["default 0;", "127.0.0.1 1;", "::1 1;",
                                                        "10.9.0.0/16 1;"]
    assert '"/healthz:0" 1;' in site and "if ($flasksample_health_denied) {\n        return 403;" in site
    site = templates.render("nginx/site.conf.j2", settings.build({"health_path": "/status?deep=1",
                                                                  "app_name": "my-shop"}))
    assert '"/status:0" 1;' in site and "$my_shop_health_denied" in site
    for bad in (["10.0.0.0/8;"], ["all"], ["300.1.1.1"], ["10.0.0.0/99"]):
        assert refused({"health_allow": bad})
