"""TLS settings checked on this machine, before any connection: certificate files, ACME input.

`check(s)` is called by settings validation: `tls: files` needs a readable certificate chain
whose first certificate matches the readable, unencrypted private key and has not expired;
`tls: acme` needs real domain names (HTTP-01 cannot prove `_` or a wildcard), an e-mail and an
https directory URL. Every problem is one KitError line. Nothing here touches a server.
"""
from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from pathlib import Path

from typing import TYPE_CHECKING

from deploy.errors import KitError

if TYPE_CHECKING:  # cryptography is imported where a certificate is read (tls: files, fab status)
    from cryptography import x509

MODES = ("off", "acme", "files")
ACME_DIRECTORIES = {
    "letsencrypt": "https://acme-v02.api.letsencrypt.org/directory",
    "staging": "https://acme-staging-v02.api.letsencrypt.org/directory",
}
# fullmatch, ASCII: these values reach certbot's command line (quoted) and nginx files
URL_RE = re.compile(r"https://[A-Za-z0-9.-]+(:[0-9]{1,5})?(/[A-Za-z0-9._~/-]*)?", re.A)
EMAIL_RE = re.compile(r"[A-Za-z0-9._+-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+", re.A)
REAL_NAME_RE = re.compile(r"([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z0-9-]{2,63}",
                          re.A)
HSTS_MAX = 2 * 365 * 24 * 3600


def local(s, path: str) -> Path:
    """A local file setting's path: relative ones start at the config file's directory."""
    return Path(s.project_dir or Path.cwd()) / Path(path).expanduser()


def real_domains(domains: list[str]) -> list[str]:
    """The names a certificate can be issued for (not `_`, not a wildcard, with a dot)."""
    return [d for d in domains if REAL_NAME_RE.fullmatch(d)]


def acme_directory(server: str) -> str:
    """`letsencrypt` (or empty) and `staging` name Let's Encrypt's directories; else a URL."""
    return ACME_DIRECTORIES.get(server or "letsencrypt", server)


@dataclass(frozen=True)
class CertInfo:
    names: list[str]
    issuer: str
    not_after: dt.datetime
    fingerprint: str


def _read(p: Path, what: str, setting: str) -> bytes:
    try:
        return p.read_bytes()
    except FileNotFoundError:
        raise KitError(f"{setting}: {what} {p} does not exist",
                       f"point {setting} at the PEM file on this machine") from None
    except (PermissionError, IsADirectoryError, OSError) as e:
        raise KitError(f"{setting}: cannot read {what} {p} ({e.strerror or type(e).__name__})",
                       f"make it readable by the user running fab, or fix {setting}") from None


def load_chain(pem: bytes, where: str) -> list[x509.Certificate]:
    from cryptography import x509

    try:
        chain = x509.load_pem_x509_certificates(pem)
    except ValueError:
        chain = []
    if not chain:
        raise KitError(f"{where} holds no PEM certificate",
                       "give the certificate chain in PEM (-----BEGIN CERTIFICATE-----)")
    return chain


def info(cert: x509.Certificate) -> CertInfo:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = san.get_values_for_type(x509.DNSName)
    except x509.ExtensionNotFound:
        names = [a.value for a in cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)]
    return CertInfo(list(names), cert.issuer.rfc4514_string(), cert.not_valid_after_utc,
                    cert.fingerprint(hashes.SHA256()).hex())


def _spki(key) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return key.public_bytes(serialization.Encoding.DER,
                            serialization.PublicFormat.SubjectPublicKeyInfo)


def check_pair(cert_path: Path, key_path: Path, now: dt.datetime | None = None) -> CertInfo:
    """Read and check a certificate chain and its key; return the leaf certificate's facts."""
    from cryptography.hazmat.primitives import serialization

    chain = load_chain(_read(cert_path, "certificate", "tls_cert"), f"tls_cert {cert_path}")
    key_pem = _read(key_path, "key", "tls_key")
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except TypeError:
        raise KitError(f"tls_key {key_path} is encrypted with a passphrase",
                       "nginx must read it unattended: openssl pkey -in KEY -out KEY.plain") from None
    except Exception:  # ValueError or UnsupportedAlgorithm
        raise KitError(f"tls_key {key_path} is not a PEM private key",
                       "give the private key in PEM (-----BEGIN PRIVATE KEY-----)") from None
    leaf = chain[0]
    if _spki(key.public_key()) != _spki(leaf.public_key()):
        raise KitError(f"tls_key {key_path} does not match the certificate in {cert_path}",
                       "use the key the certificate was issued for (its first certificate "
                       "must be the server's own)")
    facts = info(leaf)
    now = now or dt.datetime.now(dt.timezone.utc)
    if facts.not_after <= now:
        raise KitError(f"tls_cert {cert_path} expired on {facts.not_after:%Y-%m-%d %H:%M} UTC",
                       "renew it and point tls_cert/tls_key at the new pair")
    if leaf.not_valid_before_utc > now:
        raise KitError(f"tls_cert {cert_path} is not valid before "
                       f"{leaf.not_valid_before_utc:%Y-%m-%d %H:%M} UTC",
                       "check this machine's clock or the certificate")
    return facts


def check(s) -> None:
    """All TLS settings of `s` (a Settings), as one-line KitErrors."""
    def fail(name, problem, fix):
        raise KitError(f"setting '{name}' {problem}", fix)

    if s.tls not in MODES:
        fail("tls", f"is {s.tls!r}", "use off, acme (certificates from Let's Encrypt or another "
                                     "ACME server) or files (your own certificate and key)")
    if not 0 <= s.hsts <= HSTS_MAX:
        fail("hsts", f"is {s.hsts}", f"use 0 (off) or max-age seconds up to {HSTS_MAX}, e.g. 31536000")
    if s.acme_server and s.acme_server not in ACME_DIRECTORIES and not URL_RE.fullmatch(s.acme_server):
        fail("acme_server", f"is {s.acme_server!r}",
             "use letsencrypt, staging, or the https:// URL of an ACME directory")
    if s.acme_email and not EMAIL_RE.fullmatch(s.acme_email):
        fail("acme_email", f"is {s.acme_email!r}", "write a plain address like you@example.org")
    if s.acme_ca_bundle:
        load_chain(_read(local(s, s.acme_ca_bundle), "CA bundle", "acme_ca_bundle"),
                   f"acme_ca_bundle {s.acme_ca_bundle}")
    if s.tls == "acme":
        fake = [d for d in s.domains if d not in real_domains([d])]
        if fake:
            fail("domains", f"has {', '.join(map(repr, fake))}, which tls: acme cannot get a "
                            "certificate for", "list the real names this host answers to, "
                            "e.g. domains: [example.org, www.example.org] (no '_', no wildcard)")
        if not EMAIL_RE.fullmatch(s.acme_email):
            fail("acme_email", f"is {s.acme_email!r}" if s.acme_email else "is not set",
                 "set acme_email: you@example.org (the ACME server's expiry notices go there)")
    if s.tls == "files":
        if not s.tls_cert or not s.tls_key:
            fail("tls_cert" if not s.tls_cert else "tls_key", "is not set (tls: files)",
                 "set tls_cert: path/fullchain.pem and tls_key: path/privkey.pem")
        check_pair(local(s, s.tls_cert), local(s, s.tls_key))


def advice(s) -> str | None:
    """What to say when a real domain is set but TLS is off."""
    if s.tls == "off" and real_domains(s.domains):
        return ("tls is off although domains names a real host: set tls: acme (with acme_email) "
                "for a certificate from Let's Encrypt, or tls: files with tls_cert/tls_key")
    return None
