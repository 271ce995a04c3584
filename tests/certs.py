"""Test certificates made here with `cryptography`: a CA and server certificates it signs.

    ca = CA("kit test CA")
    leaf = ca.issue(["app.test"], ips=["10.231.255.1"])      # .cert_pem, .key_pem, .chain_pem
    leaf.write(tmp_path / "fullchain.pem", tmp_path / "privkey.pem")
"""
from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

PEM = serialization.Encoding.PEM


def _key():
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key) -> bytes:
    return key.private_bytes(PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


@dataclass
class Leaf:
    cert: x509.Certificate
    key_pem: bytes
    ca_pem: bytes

    @property
    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(PEM)

    @property
    def fingerprint(self) -> str:
        return self.cert.fingerprint(hashes.SHA256()).hex()

    def write(self, cert_path: Path, key_path: Path) -> None:
        cert_path.write_bytes(self.cert_pem + self.ca_pem)
        key_path.write_bytes(self.key_pem)
        key_path.chmod(0o600)


class CA:
    def __init__(self, name: str = "flasksample test CA"):
        self.key = _key()
        now = dt.datetime.now(dt.timezone.utc)
        self.cert = (x509.CertificateBuilder().subject_name(_name(name)).issuer_name(_name(name))
                     .public_key(self.key.public_key()).serial_number(x509.random_serial_number())
                     .not_valid_before(now - dt.timedelta(minutes=5))
                     .not_valid_after(now + dt.timedelta(days=30))
                     .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                     .add_extension(x509.KeyUsage(False, False, False, False, False, True, True,
                                                  False, False), critical=True)
                     .sign(self.key, hashes.SHA256()))

    @property
    def pem(self) -> bytes:
        return self.cert.public_bytes(PEM)

    def issue(self, names: list[str], ips: list[str] = (), days: float = 30,
              start_days: float = 0) -> Leaf:
        key = _key()
        start = dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=5) + dt.timedelta(days=start_days)
        san = [x509.DNSName(n) for n in names] + [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
        cert = (x509.CertificateBuilder().subject_name(_name((list(names) or list(ips))[0]))
                .issuer_name(self.cert.subject).public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(start).not_valid_after(start + dt.timedelta(days=days))
                .add_extension(x509.SubjectAlternativeName(san), critical=False)
                .add_extension(x509.ExtendedKeyUsage([x509.ExtendedKeyUsageOID.SERVER_AUTH]),
                               critical=False)
                .sign(self.key, hashes.SHA256()))
        return Leaf(cert, _key_pem(key), self.pem)
