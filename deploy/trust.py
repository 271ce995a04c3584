"""Host keys: which known_hosts files a connection uses, checking the key a server offers,
SHA256 fingerprints, fetching a host's key and recording it (`fab trust`).

Fabric accepts any host key (paramiko's AutoAddPolicy). `guard(conn, label)` replaces that,
before `conn.open()`, with OpenSSH's rules as far as the kit needs them:

- files: UserKnownHostsFile (default ~/.ssh/known_hosts ~/.ssh/known_hosts2) and
  GlobalKnownHostsFile (/etc/ssh/ssh_known_hosts{,2}) from the ssh config Fabric parsed for
  the host (`conn.ssh_config`: /etc/ssh/ssh_config + ~/.ssh/config, or the `-S` file);
- the host is looked up by HostKeyAlias, else HostName (`[host]:port` off port 22), plain,
  hashed (`|1|…`) and `*`/`?`/`!` pattern entries alike; `@revoked` keys are refused;
- a known key connects; a changed key is always refused; an unknown key is refused under
  'strict' and recorded under 'accept-new'. The stricter of StrictHostKeyChecking for the
  host (yes/ask: strict; accept-new/no/off: accept-new — never a changed key) and the kit's
  `host_key_policy` setting decides;
- keys are recorded in the first user file (a regular file; /dev/null counts as none),
  hashed when HashKnownHosts is yes.

The check happens after the key exchange and before authentication: a refused host never
sees a login, so nothing runs there. Parsing and matching are `deploy.knownhosts`; the
one-line errors here are pure too; the thin parts at the end touch files and sockets.
"""
from __future__ import annotations

import base64
import fcntl
import os
import socket
import stat
import sys
import tempfile
from dataclasses import dataclass

import paramiko

from deploy.errors import KitError
from deploy.knownhosts import (
    DEFAULT_USER_FILES,
    Entry,
    entry_line,
    expand_path,
    files_from_config,
    fingerprint,
    hashed_config,
    is_revoked,
    key_label,
    known_for,
    lookup_name,
    normalize_fingerprint,
    parse_known_hosts,
    policy_for,
    verdict,
    without_name,
)
SERVER_KEY_HINT = "on the server: ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub"


# -- pure: the one-line errors ----------------------------------------------------------------

def trust_command(label: str, ssh_config_path: str | None = None, fp: str | None = None) -> str:
    s_opt = f"-S {ssh_config_path} " if ssh_config_path else ""
    fp_opt = f" --fingerprint {fp}" if fp else ""
    return f"fab {s_opt}-H {label} trust{fp_opt}"


def unknown_error(label: str, name: str, keytype: str, fp: str, files: list[str],
                  ssh_config_path: str | None = None) -> KitError:
    where = files[0] if files else "no known_hosts file"
    return KitError(
        f"{label}: unknown host key for {name}: {key_label(keytype)} {fp} (not in {where}); "
        "nothing was sent to it",
        f"if {fp} is the server's key ({SERVER_KEY_HINT}), run `{trust_command(label, ssh_config_path)}`")


def changed_error(label: str, name: str, keytype: str, old: Entry, new_fp: str,
                  ssh_config_path: str | None = None) -> KitError:
    return KitError(
        f"{label}: the host key of {name} CHANGED: {old.file}:{old.lineno} has {key_label(old.keytype)} "
        f"{old.fingerprint}, the server offers {key_label(keytype)} {new_fp}; nothing was sent to it "
        "(someone may be intercepting the connection, or the server was re-installed)",
        f"if the server was re-installed and {new_fp} is its key ({SERVER_KEY_HINT}), "
        f"run `{trust_command(label, ssh_config_path, new_fp)}`")


def revoked_error(label: str, name: str, keytype: str, fp: str) -> KitError:
    return KitError(f"{label}: the host key of {name} ({key_label(keytype)} {fp}) is marked "
                    "@revoked in known_hosts; nothing was sent to it",
                    "give the server a new host key, then trust that one")


# -- thin: files, the paramiko policy, fetching a key -----------------------------------------

@dataclass
class HostView:
    """Everything trust needs about one connection's host."""

    label: str
    name: str                  # lookup name in known_hosts
    host: str
    port: int
    user_files: list[str]
    global_files: list[str]
    policy: str
    hashed: bool
    ssh_config_path: str | None

    @property
    def files(self) -> list[str]:
        return self.user_files + self.global_files

    @property
    def write_file(self) -> str:
        if not self.user_files:
            raise KitError(f"{self.label}: UserKnownHostsFile is none or /dev/null in the ssh "
                           "config, so there is no known_hosts file to record the host key in",
                           "name a real known_hosts file there (e.g. ~/.ssh/known_hosts)")
        return self.user_files[0]

    def entries(self) -> list[Entry]:
        out = []
        for path in self.files:
            try:
                with open(path, encoding="utf-8", errors="replace") as f:
                    out.extend(parse_known_hosts(f.read(), path))
            except FileNotFoundError:
                continue
            except OSError as e:
                raise KitError(f"cannot read known_hosts file {path} ({e.strerror})",
                               "fix its permissions") from None
        return out


def view_for(conn, label: str | None = None, setting: str = "strict") -> HostView:
    ssh_config = dict(conn.ssh_config or {})
    user_files, global_files = files_from_config(ssh_config, conn.host)
    path = getattr(conn.config, "_runtime_ssh_path", None) or conn.config.get("ssh_config_path")
    return HostView(label or conn.original_host,
                    lookup_name(conn.host, conn.port, ssh_config.get("hostkeyalias")),
                    conn.host, int(conn.port), user_files, global_files,
                    policy_for(ssh_config, setting), hashed_config(ssh_config), path)


def record(view: HostView, keytype: str, key_b64: str) -> str:
    """Write the key for the view's host into its first user file (replacing older ones).

    Only ever into a regular file (a symlink is followed to one): a device such as /dev/null
    is never replaced. Read-modify-write happens under an flock on the file's directory with
    a temp name of its own, so hosts recorded at once (threads, parallel fab runs) all stay.
    """
    path = os.path.realpath(view.write_file)
    folder = os.path.dirname(path) or "."
    try:
        st = os.stat(path)
    except FileNotFoundError:
        st = None
    if st is not None and not stat.S_ISREG(st.st_mode):
        raise KitError(f"{view.label}: cannot record the host key in {view.write_file}: not a "
                       "regular file", "set UserKnownHostsFile to a real known_hosts file "
                       "(e.g. ~/.ssh/known_hosts) in the ssh config")
    os.makedirs(folder, mode=0o700, exist_ok=True)
    lock = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    tmp = None
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
            mode = os.stat(path).st_mode & 0o777
        except FileNotFoundError:
            text, mode = "", 0o644
        text, _ = without_name(text, view.name)
        if text and not text.endswith("\n"):
            text += "\n"
        text += entry_line(view.name, keytype, key_b64, view.hashed)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(path)}.kit-")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
        tmp = None
    finally:
        if tmp:
            os.unlink(tmp)
        os.close(lock)  # releases the flock
    return path


class KitHostKeyPolicy(paramiko.MissingHostKeyPolicy):
    """Called by paramiko only for a host with no known key: refuse, or record (accept-new)."""

    def __init__(self, view: HostView, entries: list[Entry], notify=None):
        self.view, self.entries, self.notify = view, entries, notify

    def missing_host_key(self, client, hostname, key):
        v, fp = self.view, fingerprint(key.asbytes())
        if is_revoked(self.entries, key.asbytes()):
            raise revoked_error(v.label, v.name, key.get_name(), fp)
        if v.policy != "accept-new":
            raise unknown_error(v.label, v.name, key.get_name(), fp, v.user_files, v.ssh_config_path)
        path = record(v, key.get_name(), key.get_base64())
        if self.notify:
            self.notify(f"[{v.label}] accept-new: recorded {key_label(key.get_name())} key {fp} "
                        f"for {v.name} in {path}")


def _note(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def setting_policy(conn, label: str) -> str:
    """The host_key_policy setting for this host (settings are the one config source)."""
    from deploy import settings

    return settings.load(conn.config, host=settings.host_name(label)).host_key_policy


def guard(conn, label: str | None = None, setting: str | None = None) -> HostView:
    """Make `conn` check host keys as described above; call before `conn.open()`."""
    label = label or conn.original_host
    setting = setting or setting_policy(conn, label)
    view = view_for(conn, label, setting)
    entries = view.entries()
    keys = conn.client.get_host_keys()
    paramiko_name = lookup_name(conn.host, conn.port)
    for e in reversed(known_for(entries, view.name)):  # first file wins, as in OpenSSH
        if is_revoked(entries, e.blob):  # so paramiko asks the policy, which refuses it
            continue
        try:
            keys.add(paramiko_name, e.keytype, paramiko.PKey.from_type_string(e.keytype, e.blob))
        except Exception:  # a key type paramiko cannot read cannot match either
            continue
    conn.client.set_missing_host_key_policy(KitHostKeyPolicy(view, entries, _note))
    gateway = getattr(conn, "gateway", None)
    if gateway is not None and hasattr(gateway, "client"):
        guard(gateway, f"{label} (via {gateway.original_host})", setting)
    return view


def bad_key_error(view: HostView, e: paramiko.BadHostKeyException) -> KitError:
    """paramiko's 'changed key' exception → the kit's one-line error."""
    entries = view.entries()
    if is_revoked(entries, e.key.asbytes()):
        return revoked_error(view.label, view.name, e.key.get_name(), fingerprint(e.key.asbytes()))
    known = known_for(entries, view.name)
    want = e.expected_key.asbytes()
    old = next((k for k in known if k.blob == want), None) or (known[0] if known else Entry(
        (view.name,), e.expected_key.get_name(), e.expected_key.get_base64(), "", "known_hosts"))
    return changed_error(view.label, view.name, e.key.get_name(), old,
                         fingerprint(e.key.asbytes()), view.ssh_config_path)


# paramiko negotiates RSA host keys by signature algorithm; known_hosts says ssh-rsa.
KEY_TYPE_ALGORITHMS = {"ssh-rsa": ("rsa-sha2-512", "rsa-sha2-256", "ssh-rsa")}


def preferred_key_types(known_types: list[str], offered: list[str]) -> list[str]:
    """paramiko's host key algorithms, the first known type (RSA mapped) moved to the front."""
    first = [a for a in KEY_TYPE_ALGORITHMS.get(known_types[0], (known_types[0],))
             if a in offered] if known_types else []
    return first + [t for t in offered if t not in first]


def open_gateway(conn, view: HostView, setting: str):
    """The socket to the target through conn's ProxyJump gateway, whose host key is checked
    like any host's first (Fabric's default would accept any bastion key)."""
    gateway = conn.gateway
    if hasattr(gateway, "client"):
        gview = guard(gateway, f"{view.label} (via {gateway.original_host})", setting)
        try:
            return conn.open_gateway()
        except paramiko.BadHostKeyException as e:
            gateway.client.close()
            raise bad_key_error(gview, e) from None
        except KitError:
            gateway.client.close()
            raise
        except paramiko.SSHException as e:
            raise KitError(f"{view.label}: cannot connect through {gateway.original_host} ({e})",
                           "check the ProxyJump host and your login there") from None
    return conn.open_gateway()


def fetch_key(conn, view: HostView, timeout: float = 10.0, setting: str = "strict") -> paramiko.PKey:
    """The host key the server offers (key exchange only: no login, nothing runs there)."""
    known_types = [e.keytype for e in known_for(view.entries(), view.name)]
    try:
        sock = open_gateway(conn, view, setting) if conn.gateway else socket.create_connection(
            (conn.host, conn.port), timeout=conn.connect_timeout or timeout)
    except socket.gaierror:
        raise KitError(f"{view.label}: cannot resolve host name {conn.host}",
                       "check the name in -H or the ssh config") from None
    except OSError as e:
        raise KitError(f"{view.label}: cannot connect to {conn.host}:{conn.port} ({e.strerror or e})",
                       "check the address and that sshd is running there") from None
    transport = paramiko.Transport(sock)
    try:
        if known_types:  # ask for the type we know, so a changed key is compared like for like
            opts = transport.get_security_options()
            opts.key_types = preferred_key_types(known_types, list(opts.key_types))
        transport.start_client(timeout=conn.connect_timeout or timeout)
        return transport.get_remote_server_key()
    except (paramiko.SSHException, EOFError, OSError) as e:
        raise KitError(f"{view.label}: SSH key exchange with {conn.host}:{conn.port} failed ({e})",
                       "check that sshd is running there") from None
    finally:
        transport.close()


def trust_host(conn, label: str, expected: str | None, yes: bool, say, confirm) -> str:
    """`fab trust` for one host: show the key, check/confirm it, record it. Returns the verdict."""
    setting = setting_policy(conn, label)
    view = view_for(conn, label, setting)
    key = fetch_key(conn, view, setting=setting)
    blob, fp = key.asbytes(), fingerprint(key.asbytes())
    entries = view.entries()
    state = verdict(entries, view.name, blob)
    say(f"[{label}] {view.name} offers {key_label(key.get_name())} key {fp}")
    if state == "revoked":
        raise revoked_error(label, view.name, key.get_name(), fp)
    if expected is not None and normalize_fingerprint(expected) != fp:
        raise KitError(f"{label}: {view.name} offers {fp}, not the expected "
                       f"{normalize_fingerprint(expected)}; nothing was recorded",
                       f"check you reach the right server and the fingerprint ({SERVER_KEY_HINT})")
    if state == "known":
        say(f"[{label}] already trusted ({next(e.file for e in known_for(entries, view.name) if e.blob == blob)})")
        return state
    if state == "changed":
        for old in known_for(entries, view.name):
            say(f"[{label}] WARNING: {old.file}:{old.lineno} has a different key for it: "
                f"{key_label(old.keytype)} {old.fingerprint}")
        if expected is None:  # --yes (or a y) is for new hosts; a changed key is checked
            raise KitError(f"{label}: the host key of {view.name} CHANGED; nothing was recorded",
                           f"compare {fp} with the server's ({SERVER_KEY_HINT}), then run "
                           f"`{trust_command(label, view.ssh_config_path, fp)}`")
    if expected is None and not yes:
        if not confirm(f"[{label}] record this key as {view.name}'s in {view.write_file}? [y/N] "):
            raise KitError(f"{label}: key not trusted; nothing was recorded",
                           f"compare {fp} with the server's ({SERVER_KEY_HINT}) and run again")
    path = record(view, key.get_name(), key.get_base64())
    stale = [e for e in known_for(view.entries(), view.name) if e.blob != blob]
    if stale:
        e = stale[0]
        raise KitError(f"{label}: recorded {fp} in {path}, but {e.file}:{e.lineno} still holds the "
                       f"old key {e.fingerprint} for {view.name}, which the kit does not edit",
                       f"remove it: ssh-keygen -R {view.name} -f {e.file}")
    say(f"[{label}] recorded in {path}")
    return state


def stale_notes(address: str, name: str, pubkey_line: str, files: list[str] | None = None) -> list[str]:
    """For a new sandbox host: lines telling the user their own known_hosts still holds a
    different key for its address or name (an earlier host), and the command that fixes it."""
    fields = pubkey_line.split()
    if len(fields) < 2:
        return []
    blob = base64.b64decode(fields[1])
    fp = fingerprint(blob)
    files = files if files is not None else [expand_path(p) for p in DEFAULT_USER_FILES]
    notes = []
    for path in files:
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                entries = parse_known_hosts(f.read(), path)
        except OSError:
            continue
        for who in (address, name):
            if verdict(entries, who, blob) == "changed":
                notes.append(f"note: {path} still has the key of an earlier host for {who}, so the "
                             f"kit refuses it there; this host's key is {key_label(fields[0])} {fp}. "
                             f"Fix: {trust_command(who, fp=fp)}")
    return notes


def ask(prompt: str) -> bool:
    """y/N on the terminal; without one, refuse (CI must use --fingerprint or --yes)."""
    if not sys.stdin or not sys.stdin.isatty():
        raise KitError("no terminal to confirm the host key on",
                       "pass --fingerprint SHA256:… (checked against the server's key) or --yes")
    try:
        return input(prompt).strip().lower() in ("y", "yes")
    except EOFError:
        return False
