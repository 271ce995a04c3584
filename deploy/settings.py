"""Every setting of the kit: its type, default and one-line doc, validated once before any SSH.

Settings come from Fabric's own configuration under the `flasksample:` key (project
`fabric.yaml`, `~/.fabric.yaml`, `-f FILE`), with per-host overrides under
`flasksample.hosts.<host>:` (the host as given to `-H`, or its address), and then
`FABRIC_FLASKSAMPLE_<NAME>` environment variables (e.g. FABRIC_FLASKSAMPLE_WORKERS=3).
Relative local paths (app_dir) resolve against the directory of the config file that set them.
Nothing else reads configuration: tasks call `load(c)` and pass the resulting `Settings` on.

    # fabric.yaml
    flasksample:
      domains: [example.org, www.example.org]
      workers: 3
      hosts:
        web2.example.org: {workers: 5}
"""
from __future__ import annotations

import dataclasses
import difflib
import ipaddress
import os
import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from deploy import tls
from deploy.errors import KitError

# Every value that reaches a shell, unit, supervisor or nginx file matches one of these in
# full (re.fullmatch, ASCII only): nothing outside them is ever quoted into a server file.
NAME_RE = re.compile(r"[a-z][a-z0-9_-]{0,31}", re.A)
WSGI_RE = re.compile(r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(?:\(\))?", re.A)  # attr or factory()
PROCESS_RE = re.compile(r"[a-z][a-z0-9-]{0,23}", re.A)
ENV_PREFIX = "FABRIC_FLASKSAMPLE_"
ENV_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*", re.A)
# set by systemd for gunicorn (socket activation, notify): the env file must not override them
ENV_RESERVED = frozenset({"LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES", "NOTIFY_SOCKET",
                          "MAINPID", "WATCHDOG_USEC", "WATCHDOG_PID"})
ENV_BAD_CHARS = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")  # what an env file line cannot carry
ENV_MAX_VALUE = 32 * 1024
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
DOMAIN_RE = re.compile(rf"_|(?:\*\.)?{_LABEL}(?:\.{_LABEL})*", re.A)
SIZE_RE = re.compile(r"[0-9]{1,9}[kKmMgG]?", re.A)
_SEGMENT = r"[A-Za-z0-9_][A-Za-z0-9._-]{0,99}"  # never '.', '..' or a dot file
REL_PATH_RE = re.compile(rf"{_SEGMENT}(?:/{_SEGMENT})*", re.A)
ABS_PATH_RE = re.compile(rf"(?:/{_SEGMENT})+", re.A)
URL_PREFIX_RE = re.compile(r"(?:/[A-Za-z0-9_~-][A-Za-z0-9._~-]{0,99})+/", re.A)
URL_PATH_RE = re.compile(r"(?:/[A-Za-z0-9_~-][A-Za-z0-9._~-]{0,99})*/?(?:\?[A-Za-z0-9._~=&-]*)?",
                         re.A)
NETWORK_RE = re.compile(r"[0-9A-Fa-f:.]{2,39}(?:/[0-9]{1,3})?", re.A)
PYTHON_RE = re.compile(rf"python3(?:\.[0-9]{{1,2}})?|(?:/{_SEGMENT})+", re.A)
APT_PACKAGE_RE = re.compile(r"[a-z0-9][a-z0-9+.-]{1,99}", re.A)  # Debian policy 5.6.1
# base_dir may not be (or be under) a directory the system owns
SYSTEM_DIRS = ("/bin", "/boot", "/dev", "/etc", "/lib", "/lib32", "/lib64", "/proc", "/root",
               "/sbin", "/sys", "/usr", "/var/lib", "/var/log")
SYSTEM_ROOTS = ("/home", "/mnt", "/media", "/opt", "/run", "/srv", "/tmp", "/var", "/var/tmp")
# app_name is a user, a unit and a directory: never one the system or the kit already uses
RESERVED_NAMES = frozenset({
    "root", "daemon", "bin", "sys", "sync", "games", "man", "lp", "mail", "news", "uucp",
    "proxy", "www-data", "backup", "list", "irc", "gnats", "nobody", "nogroup", "admin",
    "sudo", "adm", "staff", "users", "wheel", "deploy", "ubuntu", "debian", "systemd",
    "ssh", "sshd", "nginx", "cron", "crond", "dbus", "messagebus", "polkitd", "rsyslog",
    "syslog", "supervisor", "supervisord", "networking", "network", "getty", "apt", "dpkg",
    "journald", "udev", "tmp", "run", "flasksample-kit"})
RESERVED_SUFFIXES = ("-preflight",)
RESERVED_PREFIXES = ("systemd-", "_")


def check_env_name(name: str) -> str:
    """An environment variable name the env file, systemd and sh all carry; else KitError."""
    if not isinstance(name, str) or not ENV_NAME_RE.fullmatch(name):
        raise KitError(f"{name!r} is not a valid environment variable name",
                       "use letters, digits and '_', not starting with a digit (e.g. SECRET_KEY)")
    if name in ENV_RESERVED:
        raise KitError(f"{name} is set by systemd for gunicorn and cannot come from the env file",
                       "pick another name")
    return name


def check_env_value(name: str, value: str) -> str:
    """The value, or a one-line KitError when systemd and sh could not both carry it."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise KitError(f"the value of {name} is not valid UTF-8 text",
                       "systemd ignores such lines; encode it (e.g. base64) and decode in the app") from None
    bad = ENV_BAD_CHARS.search(value)
    if bad:
        what = {"\n": "a newline", "\r": "a carriage return", "\x00": "a NUL byte"}.get(
            bad.group(), f"control character {ord(bad.group()):#04x}")
        raise KitError(f"the value of {name} contains {what}, which an env file line cannot "
                       "carry the same way for systemd and sh",
                       "store it on one line (e.g. base64 or \\n escapes the app decodes)")
    if len(value.encode()) > ENV_MAX_VALUE:
        raise KitError(f"the value of {name} is {len(value.encode())} bytes (limit {ENV_MAX_VALUE})",
                       "keep large data in a file the app reads, and put its path here")
    return value


def reserved_name(name: str) -> bool:
    """Is `name` an account, unit or path the system or the kit itself already uses?"""
    return (name in RESERVED_NAMES or name.endswith(RESERVED_SUFFIXES)
            or name.startswith(RESERVED_PREFIXES))


# a host as written in -H or servers: `[user@]name[:port]` (name: DNS name, address or ssh alias)
HOST_RE = re.compile(r"(?:(?P<user>[a-z_][a-z0-9_.-]{0,31})@)?"
                     r"(?P<name>[A-Za-z0-9](?:[A-Za-z0-9._-]{0,252}))(?::(?P<port>[0-9]{1,5}))?")
ADDRESS_RE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,252})|\[[0-9A-Fa-f:.]+\]")
ROLES = ("web", "lb")

PROJECT_ROOT = Path(__file__).resolve().parent.parent  # the kit's checkout (or site-packages)


def doc(text: str, default, **kw):
    """A dataclass field with its one-line documentation attached."""
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata={"doc": text}, **kw)
    return field(default=default, metadata={"doc": text}, **kw)


@dataclass(frozen=True)
class Settings:
    """The kit's settings for one host. Defaults here are the documentation."""

    app_name: str = doc("service, user and directory name on the server", "flasksample")
    app_dir: str = doc("local directory shipped as a release (relative to the config file)", "app")
    wsgi: str = doc("WSGI entry inside app_dir: module:attr or module:factory()", "serve:app")
    requirements: str = doc("what the venv installs: '' = requirements.txt, else pyproject.toml "
                            "with its uv.lock or pylock.toml (exported pinned); or a file name",
                            "")
    domains: list = doc("nginx server_name values; '_' answers any name", ["_"])
    workers: int = doc("gunicorn workers; 0 = the app's gunicorn.conf.py, else 2 x cores + 1", 0)
    process_manager: str = doc("who supervises gunicorn: 'systemd' or 'supervisor'", "systemd")
    keep_releases: int = doc("releases kept on the server (current and previous always)", 5)
    base_dir: str = doc("where releases live on the server; '' means /srv/<app_name>", "")
    health_path: str = doc("optional path of the app that must answer 2xx; '' = the kit checks "
                           "that / answers (below 500) from the new release", "")
    health_timeout: int = doc("seconds a new release gets to answer its health check", 20)
    health_allow: list = doc("addresses/networks besides the host itself that nginx lets ask "
                             "health_path (or /healthz), e.g. [10.0.0.0/8] for monitoring; "
                             "others get 403", [])
    static_url: str = doc("URL prefix nginx serves from the release's static_dir", "/static/")
    static_dir: str = doc("static files inside the release; '' = the WSGI module's static/ "
                          "(Flask's default), detected", "")
    client_max_body_size: str = doc("largest request body nginx accepts (nginx size)", "10m")
    proxy_timeout: int = doc("seconds nginx waits for gunicorn to answer", 60)
    env: dict = doc("non-secret environment for the app (secrets: `fab env.set`)", {})
    shared_dirs: list = doc("directories in each release linked to shared/ (kept across "
                            "releases, writable by the app), e.g. [instance, uploads]", [])
    python: str = doc("interpreter used to create the venv on the server", "python3")
    apt_packages: list = doc("extra Debian packages setup installs, e.g. [libpq-dev, "
                             "build-essential]", [])
    apt_lock_wait: int = doc("seconds setup waits for the dpkg lock (held by cloud-init or "
                             "unattended-upgrades after a VM boots) before it gives up", 300)
    host_key_policy: str = doc("'strict' (refuse unknown keys) or 'accept-new' (as OpenSSH)",
                               "strict")
    ssh_keepalive: int = doc("seconds between SSH keepalives; a connection whose data goes "
                             "unacknowledged for 3 of them is given up (half-open network)", 5)
    step_timeout: int = doc("seconds one remote script (a deploy step, setup, status…) may run "
                            "before the task gives up on it; 0 = no limit", 1200)
    switch_batch: int = doc("hosts switched at once in a multi-host deploy; 0 = all together "
                            "(behind a load balancer each batch is taken out of it first)", 0)
    servers: dict = doc("hosts by role, used when no -H is given: {web: [web1, deploy@web2], "
                        "lb: [lb1]}", {})
    parallel: int = doc("hosts worked on at once (connections, preparation, gates, logs)", 10)
    upstream_address: str = doc("address the load balancer reaches this web host at; '' = "
                                "its SSH host name (set it per host under hosts:)", "")
    lb_max_fails: int = doc("load balancer: failed tries that take a web host out for "
                            "lb_fail_timeout", 1)
    lb_fail_timeout: int = doc("load balancer: seconds a failed web host stays out (passive "
                               "health check)", 10)
    release_command: str = doc("run once per deploy in the new release before the switch "
                               "(e.g. flask --app shop init-db); failure switches nothing", "")
    processes: dict = doc("background processes run from the current release, e.g. "
                          "{worker: 'flask --app shop worker'}; each <app>-<name>", {})
    # HTTPS (README "HTTPS"; checks in deploy/tls.py)
    tls: str = doc("HTTPS: 'off', 'acme' (certbot, HTTP-01, renewed by certbot's timer) or "
                   "'files' (tls_cert + tls_key)", "off")
    acme_email: str = doc("account e-mail for the ACME server (tls: acme)", "")
    acme_server: str = doc("ACME directory: 'letsencrypt', 'staging' (Let's Encrypt's test "
                           "server) or an https:// directory URL", "letsencrypt")
    acme_ca_bundle: str = doc("local PEM file the server trusts to reach acme_server (a "
                              "private or test ACME server); '' = the system's CAs", "")
    tls_cert: str = doc("local certificate chain, PEM, server certificate first (tls: files)", "")
    tls_key: str = doc("local private key, PEM, unencrypted (tls: files); stored root-only", "")
    hsts: int = doc("Strict-Transport-Security max-age in seconds; 0 = no HSTS header", 0)
    # Not a setting: the directory relative local paths start from (set by `load`).
    project_dir: str = field(default="", repr=False, compare=False, metadata={"internal": True})

    # -- derived values ---------------------------------------------------------------------
    @property
    def root(self) -> str:
        return self.base_dir or f"/srv/{self.app_name}"

    @property
    def app_user(self) -> str:
        return self.app_name

    @property
    def wsgi_module(self) -> str:
        return self.wsgi.split(":")[0]

    @property
    def local_app_dir(self) -> Path:
        return (Path(self.project_dir or Path.cwd()) / self.app_dir).resolve()

    @property
    def gate_path(self) -> str:
        """What the health gate requests: the app's health_path, or /."""
        return self.health_path or "/"


FIELDS = {f.name: f for f in dataclasses.fields(Settings) if not f.metadata.get("internal")}
PER_HOST_KEY = "hosts"


def describe() -> list[tuple[str, object, str]]:
    """(name, default, doc) for every setting, for `fab settings` and the README."""
    out = []
    for f in FIELDS.values():
        out.append((f.name, default_of(f.name), f.metadata["doc"]))
    return out


def _unknown(name: str, where: str) -> KitError:
    close = difflib.get_close_matches(name, list(FIELDS), n=1)
    hint = f"did you mean '{close[0]}'?" if close else "see `fab settings` for the valid names"
    return KitError(f"unknown setting '{name}' in {where}", hint)


def default_of(name: str):
    f = FIELDS[name]
    return f.default if f.default is not dataclasses.MISSING else f.default_factory()


def _coerce(name: str, value, where: str):
    """Check one value's type; env vars and CLI give strings, so numeric strings are accepted."""
    default = default_of(name)
    expected = type(default)
    bad = KitError(
        f"setting '{name}' in {where} must be {expected.__name__}, got {value!r}",
        f"set {name}: {default!r} style value in fabric.yaml",
    )
    if expected is int:
        if isinstance(value, bool):
            raise bad
        if isinstance(value, str):
            try:
                return int(value.strip())
            except ValueError:
                raise bad from None
        if not isinstance(value, int):
            raise bad
        return value
    if expected is list:
        if isinstance(value, str):
            return [v for v in re.split(r"[,\s]+", value) if v]
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
            raise bad
        return list(value)
    if name == "servers":
        return _servers(value, where)
    if expected is dict:
        if not isinstance(value, dict):
            raise bad
        return {str(k): str(v) for k, v in value.items()}
    if not isinstance(value, str):
        raise bad
    return value


def _servers(value, where: str) -> dict:
    """servers: {role: [host, …]} with known roles and hosts written as [user@]name[:port]."""
    if not isinstance(value, dict):
        raise KitError(f"setting 'servers' in {where} must map roles to host lists, got {value!r}",
                       "write servers: {web: [web1, web2], lb: [lb1]}")
    out = {}
    for role, hosts in value.items():
        if role not in ROLES:
            raise KitError(f"setting 'servers' in {where} has an unknown role {role!r}",
                           "use web (app servers) and lb (load balancers)")
        if isinstance(hosts, str):
            hosts = [h for h in re.split(r"[,\s]+", hosts) if h]
        if not isinstance(hosts, (list, tuple)) or not all(isinstance(h, str) for h in hosts):
            raise KitError(f"setting 'servers.{role}' in {where} must be a list of hosts",
                           f"write {role}: [host1, host2]")
        for h in hosts:
            if not HOST_RE.fullmatch(h):
                raise KitError(f"setting 'servers.{role}' in {where} has {h!r}, not a host",
                               "write [user@]host[:port], e.g. deploy@web1.example.org")
        out[str(role)] = list(hosts)
    return out


def _check(s: Settings, where: str) -> None:
    """Value rules that types alone do not catch."""

    def fail(name, problem, fix):
        env = f"{ENV_PREFIX}{name.split('.')[0].upper()}"
        raise KitError(f"setting '{name}' in {f'environment variable {env}' if env in os.environ else where} "
                       f"{problem}", fix)

    if not NAME_RE.fullmatch(s.app_name):
        fail("app_name", f"is {s.app_name!r}, not a valid service/user name",
             "use lowercase letters, digits, '-' or '_', starting with a letter (max 32)")
    if reserved_name(s.app_name):
        fail("app_name", f"is {s.app_name!r}, a name the system or the kit already uses "
             "(an account, a unit or the kit's own directory)", "pick a name of your app's own")
    if not WSGI_RE.fullmatch(s.wsgi):
        fail("wsgi", f"is {s.wsgi!r}, not module:attribute or module:factory()",
             "write it like serve:app or shop:create_app()")
    if s.process_manager not in ("systemd", "supervisor"):
        fail("process_manager", f"is {s.process_manager!r}", "use 'systemd' or 'supervisor'")
    if s.host_key_policy not in ("strict", "accept-new"):
        fail("host_key_policy", f"is {s.host_key_policy!r}", "use 'strict' or 'accept-new'")
    if s.workers < 0 or s.workers > 64:
        fail("workers", f"is {s.workers}", "use 0 (automatic) or a count from 1 to 64")
    if s.keep_releases < 2:
        fail("keep_releases", f"is {s.keep_releases}",
             "keep at least 2 so the previous release stays for rollback")
    if s.health_timeout < 1 or s.proxy_timeout < 1:
        fail("health_timeout", "and proxy_timeout must be at least 1 second", "raise them")
    if s.switch_batch < 0:
        fail("switch_batch", f"is {s.switch_batch}", "use 0 (all at once) or a host count")
    if not 1 <= s.ssh_keepalive <= 300:
        fail("ssh_keepalive", f"is {s.ssh_keepalive}", "use 1 to 300 seconds")
    if s.step_timeout < 0:
        fail("step_timeout", f"is {s.step_timeout}", "use 0 (no limit) or seconds, e.g. 1200")
    if not 1 <= s.parallel <= 256:
        fail("parallel", f"is {s.parallel}", "use a host count from 1 to 256")
    if s.lb_max_fails < 0 or s.lb_fail_timeout < 1:
        fail("lb_max_fails", "must be 0 or more and lb_fail_timeout at least 1 second", "fix them")
    if s.upstream_address and not ADDRESS_RE.fullmatch(s.upstream_address):
        fail("upstream_address", f"is {s.upstream_address!r}", "write a host name or IP address")
    if not s.domains or not all(len(d) <= 253 and DOMAIN_RE.fullmatch(d) for d in s.domains):
        fail("domains", f"is {s.domains!r}", "list host names like [example.org] or ['_']")
    if not SIZE_RE.fullmatch(s.client_max_body_size):
        fail("client_max_body_size", f"is {s.client_max_body_size!r}", "use an nginx size like 10m")
    if s.base_dir:
        if not ABS_PATH_RE.fullmatch(s.base_dir):
            fail("base_dir", f"is {s.base_dir!r}, not a plain absolute path",
                 "use e.g. /srv/myapp (letters, digits, '.', '_', '-'; no '..', no trailing '/')")
        if s.base_dir in SYSTEM_ROOTS or any(
                s.base_dir == d or s.base_dir.startswith(d + "/") for d in SYSTEM_DIRS):
            fail("base_dir", f"is {s.base_dir!r}, a directory the system owns",
                 "use a directory of the app's own, e.g. /srv/myapp")
    if s.health_path and (not URL_PATH_RE.fullmatch(s.health_path)
                          or not s.health_path.startswith("/")):
        fail("health_path", f"is {s.health_path!r}",
             "write a plain path starting with '/', e.g. /healthz (letters, digits, . _ ~ -)")
    for net in s.health_allow:
        try:
            ok = bool(NETWORK_RE.fullmatch(net)) and bool(ipaddress.ip_network(net, strict=False))
        except ValueError:
            ok = False
        if not ok:
            fail("health_allow", f"has {net!r}", "list IP addresses or networks like 10.0.0.0/8")
    if not URL_PREFIX_RE.fullmatch(s.static_url):
        # nginx `alias` with a prefix lacking its trailing slash serves files outside static_dir.
        fail("static_url", f"is {s.static_url!r}", "start and end it with '/', e.g. /static/")
    if s.static_dir and not REL_PATH_RE.fullmatch(s.static_dir):
        fail("static_dir", f"is {s.static_dir!r}",
             "name a directory inside the release, e.g. static (no '..', no leading '/' or '.')")
    if s.requirements and not REL_PATH_RE.fullmatch(s.requirements):
        fail("requirements", f"is {s.requirements!r}",
             "name a file inside app_dir, e.g. requirements.txt (no '..', no leading '/' or '.')")
    if not PYTHON_RE.fullmatch(s.python):
        fail("python", f"is {s.python!r}", "use python3, python3.N or an absolute path")
    for package in s.apt_packages:
        if not APT_PACKAGE_RE.fullmatch(package):
            fail("apt_packages", f"has {package!r}, not a Debian package name",
                 "list package names like libpq-dev (lowercase letters, digits, '+', '-', '.')")
    if not 0 <= s.apt_lock_wait <= 3600:
        fail("apt_lock_wait", f"is {s.apt_lock_wait}", "use 0 to 3600 seconds")
    for path in s.shared_dirs:
        if not REL_PATH_RE.fullmatch(path):
            fail("shared_dirs", f"has {path!r}", "list paths relative to the release, like uploads")
    for a in s.shared_dirs:
        for b in s.shared_dirs:
            if a != b and b.startswith(a + "/"):
                # the app owns shared/a, so it could swap shared/a/… for a symlink root follows
                fail("shared_dirs", f"has {b!r} inside {a!r}", "list only the outer directory")
    if len(set(s.shared_dirs)) != len(s.shared_dirs):
        fail("shared_dirs", f"lists a directory twice: {s.shared_dirs!r}", "list each once")
    for key, value in s.env.items():
        try:
            check_env_name(key)
            check_env_value(key, value)
        except KitError as e:
            raise KitError(f"setting 'env' in {where}: {e}") from None
    for what, command in [("release_command", s.release_command), *(
            (f"processes.{name}", cmd) for name, cmd in s.processes.items())]:
        if any(c in command for c in "\n\r\0") or len(command) > 2000:
            fail(what, "has a line break (or is over 2000 characters)",
                 "write one shell command line; put longer scripts in a file of the app")
    for name, command in s.processes.items():
        if not PROCESS_RE.fullmatch(name):
            fail("processes", f"has a bad name {name!r}",
                 "name each process with lowercase letters, digits and '-', like worker")
        if not command.strip():
            fail(f"processes.{name}", "is empty", "give the command to run, e.g. rq worker")
    tls.check(s)
    app_dir = s.local_app_dir
    if not app_dir.is_dir():
        fail("app_dir", f"is {s.app_dir!r}, which is not a directory here",
             "point it at the directory holding your Flask app")
    module_file = app_dir / (s.wsgi_module.replace(".", "/") + ".py")
    package_init = app_dir / s.wsgi_module.replace(".", "/") / "__init__.py"
    if not module_file.is_file() and not package_init.is_file():
        fail("wsgi", f"names module '{s.wsgi_module}', but {module_file} does not exist",
             "set wsgi to module:attribute of a module inside app_dir")
    wanted = s.requirements or ("requirements.txt" if not (app_dir / "pyproject.toml").is_file()
                                else "pyproject.toml")
    if not REL_PATH_RE.fullmatch(wanted) or not (app_dir / wanted).is_file():
        fail("requirements", f"is {wanted!r}, missing in {app_dir}",
             "add a pinned requirements.txt, or a pyproject.toml with its uv.lock")


def build(raw: dict | None, host: str | None = None, where: str = "fabric.yaml",
          project_dir: str = "", environ=None) -> Settings:
    """Validate a raw `flasksample` mapping (plus the per-host override for `host`).

    Every block under `hosts:` is validated, not only `host`'s: a typo in another host's
    block is an error now, not when that host is deployed.
    """
    raw = dict(raw or {})
    per_host = raw.pop(PER_HOST_KEY, None) or {}
    if not isinstance(per_host, dict):
        raise KitError(f"'flasksample.hosts' in {where} must map host names to settings",
                       "write hosts: {web1: {workers: 2}}")
    for other in per_host:
        if other != host:
            _build_one(raw, per_host, other, where, project_dir, environ)
    return _build_one(raw, per_host, host, where, project_dir, environ)


def _build_one(raw: dict, per_host: dict, host, where: str, project_dir: str, environ) -> Settings:
    values = {}
    for layer, layer_where in ((raw, where), (per_host.get(host) or {}, f"{where} hosts.{host}")):
        if not isinstance(layer, dict):
            raise KitError(f"'{layer_where}' must be a mapping of settings", "fix its indentation")
        for name, value in layer.items():
            if name not in FIELDS:
                raise _unknown(name, layer_where)
            values[name] = _coerce(name, value, layer_where)
    for name, value in env_overrides(environ).items():
        values[name] = _coerce(name, value, f"environment variable {ENV_PREFIX}{name.upper()}")
    settings = Settings(**values, project_dir=project_dir)
    _check(settings, f"{where} hosts.{host}" if per_host.get(host) else where)
    if not settings.static_dir:
        from deploy import detect

        settings = dataclasses.replace(settings, static_dir=detect.static_folder(
            settings.local_app_dir, settings.wsgi_module))
    return settings


def env_overrides(environ=None) -> dict:
    """FABRIC_FLASKSAMPLE_<NAME>=value for every setting NAME (lists: comma-separated;
    mappings: YAML flow style, e.g. '{worker: rq worker}')."""
    import yaml

    environ = os.environ if environ is None else environ
    out = {}
    for key, value in environ.items():
        if not key.startswith(ENV_PREFIX):
            continue
        name = key[len(ENV_PREFIX):].lower()
        if name not in FIELDS:
            raise _unknown(name, f"environment variable {key}")
        if isinstance(default_of(name), dict):
            try:
                value = yaml.safe_load(value)
            except yaml.YAMLError:
                raise KitError(f"environment variable {key} is not a YAML mapping",
                               f"write it like {key}='{{name: value}}'") from None
        out[name] = value
    return out


def config_files(config) -> list[tuple[str, dict]]:
    """(path, raw flasksample mapping) of each config file Fabric loaded, strongest first."""
    out = []
    for level in ("runtime", "project", "user", "system"):
        path, data = getattr(config, f"_{level}_path", None), getattr(config, f"_{level}", None)
        if path and isinstance(data, dict) and isinstance(data.get("flasksample"), dict):
            out.append((str(path), data["flasksample"]))
    return out


def origin(config, name: str, host: str | None = None, environ=None) -> str:
    """Where a setting's value comes from: an env var, a file (and its hosts: entry), or default."""
    environ = os.environ if environ is None else environ
    if f"{ENV_PREFIX}{name.upper()}" in environ:
        return f"env {ENV_PREFIX}{name.upper()}"
    for path, raw in config_files(config):
        per_host = raw.get(PER_HOST_KEY) or {}
        if host and isinstance(per_host.get(host), dict) and name in per_host[host]:
            return f"{path} hosts.{host}"
        if name in raw:
            return path
    return "default"


def _project_dir(config) -> str:
    """The directory relative paths start from: that of the file that set app_dir, else the
    project's (where Fabric found the fabfile or flasksample found fabric.yaml), else the cwd."""
    for path, raw in config_files(config):
        if "app_dir" in raw:
            return str(Path(path).resolve().parent)
    prefix = getattr(config, "_project_prefix", None)
    return str(Path(prefix).resolve()) if prefix else str(Path.cwd())


def host_name(host: str) -> str:
    """The name a `hosts:` block is looked up by for a `[user@]name[:port]` host string."""
    name = host.rsplit("@", 1)[-1]
    return name.split(":")[0] if name.count(":") == 1 else name


def load(config, host: str | None = None) -> Settings:
    """Settings from a Fabric/Invoke config object (`c.config`), for one host."""
    raw = config.get("flasksample", None) if hasattr(config, "get") else None
    files = config_files(config)
    where = Path(files[0][0]).name if files else "fabric.yaml"
    if raw is not None and not hasattr(raw, "items"):
        raise KitError(f"'flasksample' in {where} must be a mapping of settings",
                       "write flasksample: followed by indented name: value lines")
    plain = _plain(raw) if raw is not None else {}
    return build(plain, host=host, where=where, project_dir=_project_dir(config))


def _plain(value):
    """Invoke's DataProxy → plain dicts/lists, so validation sees ordinary types."""
    if hasattr(value, "items"):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
