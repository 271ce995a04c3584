"""known_hosts as OpenSSH reads it: SHA256 fingerprints, parsing (plain, hashed `|1|…`,
`*`/`?`/`!` patterns, `@revoked`), matching a host to its keys, the lines to record, and
which files and policy an ssh config names. Pure: text and values in, values out; the
checking and recording over a connection is `deploy.trust`.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import shlex
from dataclasses import dataclass

from deploy.errors import KitError

DEFAULT_USER_FILES = ("~/.ssh/known_hosts", "~/.ssh/known_hosts2")
DEFAULT_GLOBAL_FILES = ("/etc/ssh/ssh_known_hosts", "/etc/ssh/ssh_known_hosts2")
KEY_LABELS = {"ssh-ed25519": "ED25519", "ssh-rsa": "RSA", "ssh-dss": "DSA",
              "ecdsa-sha2-nistp256": "ECDSA", "ecdsa-sha2-nistp384": "ECDSA",
              "ecdsa-sha2-nistp521": "ECDSA"}
POLICIES = ("strict", "accept-new")


def fingerprint(blob: bytes) -> str:
    """OpenSSH's SHA256 fingerprint of a public key blob: SHA256:<base64, no padding>."""
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


def normalize_fingerprint(text: str) -> str:
    """'SHA256:abc', 'abc' or 'sha256:abc=' → 'SHA256:abc'; KitError for other formats."""
    value = text.strip()
    if value.upper().startswith("MD5:"):
        raise KitError(f"fingerprint {value} is MD5", "give the SHA256 one (ssh-keygen -lf KEY.pub)")
    if value[:7].upper() == "SHA256:":
        value = value[7:]
    value = value.rstrip("=")
    if not value or any(ch not in "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
                        for ch in value):
        raise KitError(f"{text!r} is not a SHA256 fingerprint", "write it like SHA256:3b9f…, as "
                       "ssh-keygen -lf prints it")
    return "SHA256:" + value


def key_label(keytype: str) -> str:
    return KEY_LABELS.get(keytype, keytype)


def lookup_name(host: str, port: int, alias: str | None = None) -> str:
    """The name a host's keys are stored under: HostKeyAlias, or host / [host]:port."""
    if alias:
        return alias
    return host if int(port) == 22 else f"[{host}]:{int(port)}"


@dataclass(frozen=True)
class Entry:
    """One known_hosts line: host patterns, key type, base64 key, optional @marker."""

    patterns: tuple[str, ...]
    keytype: str
    key_b64: str
    marker: str = ""
    file: str = ""
    lineno: int = 0

    @property
    def blob(self) -> bytes:
        try:
            return base64.b64decode(self.key_b64)
        except (ValueError, TypeError):
            return b""

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.blob)


def parse_line(line: str, file: str = "", lineno: int = 0) -> Entry | None:
    """A known_hosts line → Entry, or None for comments, blanks and lines that do not parse."""
    fields = line.split()
    if not fields or fields[0].startswith("#"):
        return None
    marker = ""
    if fields[0].startswith("@"):
        marker, fields = fields[0], fields[1:]
    if len(fields) < 3:
        return None
    return Entry(tuple(fields[0].split(",")), fields[1], fields[2], marker, file, lineno)


def parse_known_hosts(text: str, file: str = "") -> list[Entry]:
    entries = []
    for n, line in enumerate(text.splitlines(), 1):
        entry = parse_line(line, file, n)
        if entry is not None:
            entries.append(entry)
    return entries


def _hashed_matches(pattern: str, name: str) -> bool:
    parts = pattern.split("|")  # |1|salt|hash
    if len(parts) != 4 or parts[1] != "1":
        return False
    try:
        salt, want = base64.b64decode(parts[2]), base64.b64decode(parts[3])
    except ValueError:
        return False
    return hmac.compare_digest(hmac.new(salt, name.encode(), hashlib.sha1).digest(), want)


def hash_name(name: str, salt: bytes | None = None) -> str:
    """OpenSSH's hashed host name (HashKnownHosts yes): |1|base64(salt)|base64(hmac-sha1)."""
    salt = salt if salt is not None else os.urandom(20)
    digest = hmac.new(salt, name.encode(), hashlib.sha1).digest()
    return f"|1|{base64.b64encode(salt).decode()}|{base64.b64encode(digest).decode()}"


def _glob(pattern: str, name: str) -> bool:
    """OpenSSH patterns: only * and ? are special (not [..], so [host]:port is literal)."""
    rx = "".join(".*" if ch == "*" else "." if ch == "?" else re.escape(ch) for ch in pattern)
    return re.fullmatch(rx, name) is not None


def matches(entry: Entry, name: str) -> bool:
    """OpenSSH's rule: some pattern matches and no negated (!) pattern does."""
    name = name.lower()
    hit = False
    for pattern in entry.patterns:
        if pattern.startswith("|"):
            hit = hit or _hashed_matches(pattern, name)
            continue
        negated = pattern.startswith("!")
        p = pattern[1:] if negated else pattern
        if _glob(p.lower(), name):
            if negated:
                return False
            hit = True
    return hit


def known_for(entries: list[Entry], name: str) -> list[Entry]:
    """The plain (not @marker) entries for `name`, in file order."""
    return [e for e in entries if not e.marker and matches(e, name)]


def is_revoked(entries: list[Entry], blob: bytes) -> bool:
    return any(e.marker == "@revoked" and e.blob == blob for e in entries)


def verdict(entries: list[Entry], name: str, blob: bytes) -> str:
    """'known' | 'changed' | 'unknown' | 'revoked' for the key `blob` offered by `name`."""
    if is_revoked(entries, blob):
        return "revoked"
    known = known_for(entries, name)
    if any(e.blob == blob for e in known):
        return "known"
    return "changed" if known else "unknown"


def entry_line(name: str, keytype: str, key_b64: str, hashed: bool = False) -> str:
    return f"{hash_name(name) if hashed else name} {keytype} {key_b64}\n"


def without_name(text: str, name: str) -> tuple[str, int]:
    """`text` minus `name` in plain entries (as `ssh-keygen -R` does; patterns stay).

    A line naming other hosts too keeps them; a line left with no name goes. Returns the new
    text and how many entries were changed or dropped.
    """
    out, changed = [], 0
    lname = name.lower()
    for line in text.splitlines(keepends=True):
        entry = parse_line(line)
        if entry is None or entry.marker:
            out.append(line)
            continue
        keep = [p for p in entry.patterns
                if not (p.lower() == lname or (p.startswith("|") and _hashed_matches(p, lname)))]
        if len(keep) == len(entry.patterns):
            out.append(line)
            continue
        changed += 1
        if keep:
            rest = line.split(None, 1)[1]
            out.append(",".join(keep) + " " + rest)
    return "".join(out), changed


def expand_path(path: str, user: str = "", host: str = "") -> str:
    """~, %d (home), %u (local user), %h (remote host), %% in a known_hosts path."""
    home = os.path.expanduser("~")
    path = path.replace("%%", "\0").replace("%d", home).replace("%u", user)
    path = path.replace("%h", host).replace("\0", "%")
    return os.path.expanduser(path)


def files_from_config(ssh_config: dict, host: str = "") -> tuple[list[str], list[str]]:
    """(user files, global files) named by UserKnownHostsFile / GlobalKnownHostsFile."""
    import getpass

    user = getpass.getuser()

    def files(key, default):
        raw = ssh_config.get(key)
        if isinstance(raw, list):
            raw = " ".join(raw)
        names = shlex.split(raw) if raw else list(default)
        if [n.lower() for n in names] == ["none"]:
            return []
        paths = [expand_path(n, user, host) for n in names]
        return [p for p in paths if p != os.devnull]  # /dev/null: "no known hosts", not a file

    return files("userknownhostsfile", DEFAULT_USER_FILES), \
        files("globalknownhostsfile", DEFAULT_GLOBAL_FILES)


def policy_for(ssh_config: dict, setting: str) -> str:
    """The policy for a host: the stricter of StrictHostKeyChecking (where set) and the kit's
    setting, so a global `StrictHostKeyChecking no` cannot weaken `host_key_policy: strict`."""
    value = str(ssh_config.get("stricthostkeychecking", "")).strip().lower()
    setting = setting if setting in POLICIES else "strict"
    if value in ("yes", "ask", "true"):
        return "strict"
    return setting


def hashed_config(ssh_config: dict) -> bool:
    return str(ssh_config.get("hashknownhosts", "no")).strip().lower() in ("yes", "true")
