"""A real ACME server for the HTTPS tests: Debian's `pebble` and `pebble-challtestsrv` (its DNS).

Both run on this machine. Pebble listens on its own address, 10.231.255.X on a veth pair this
module creates and removes (no dummy module here) (sandbox hosts reach it through their default route; 10.231.255.0/24 is never a
sandbox's), so one server outlives the hosts of several tests. Validation is real HTTP-01:
pebble asks challtestsrv for a name's address and fetches the challenge from that host's port
80; only the random validation delays and nonce rejections are off. Names resolve only once
`add_a(name, address)` maps them; any other name fails validation.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import ssl
import subprocess
import time
import urllib.request
from pathlib import Path

from tests.certs import CA

NEEDED = ("pebble", "pebble-challtestsrv")


def missing() -> list[str]:
    return [t for t in NEEDED if not shutil.which(t)]


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM when the test process dies, even by SIGKILL."""
    import ctypes
    import signal

    ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _remove_stale_links() -> None:
    """This module's links left by a test process that was killed (its pid is gone)."""
    for link in os.listdir("/sys/class/net"):
        if link.startswith("kitacme") and link[7:].isdigit() and not Path(f"/proc/{link[7:]}").exists():
            subprocess.run(["ip", "link", "delete", link], capture_output=True)


def _free_port(address: str) -> int:
    with socket.socket() as s:
        s.bind((address, 0))
        return s.getsockname()[1]


def _wait_port(address: str, port: int, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args[0]} exited: {log.read_text()[-2000:]}")
        try:
            socket.create_connection((address, port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{proc.args[0]} did not listen on {address}:{port}")


class Pebble:
    def __init__(self, workdir: Path):
        self.dir = workdir
        self.link = f"kitacme{os.getpid()}"  # + "p" for the peer: at most 15 characters
        self.address = f"10.231.255.{1 + os.getpid() % 253}"
        self.procs: list[subprocess.Popen] = []

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self) -> "Pebble":
        _remove_stale_links()
        subprocess.run(["ip", "link", "delete", self.link], capture_output=True)
        for argv in (["ip", "link", "add", self.link, "type", "veth", "peer", "name", self.link + "p"],
                     ["ip", "addr", "add", f"{self.address}/32", "dev", self.link],
                     ["ip", "link", "set", self.link, "up"],
                     ["ip", "link", "set", self.link + "p", "up"]):
            subprocess.run(argv, check=True, capture_output=True)
        self.dns_port, self.dns_mgmt = _free_port("127.0.0.1"), _free_port("127.0.0.1")
        self.port, self.mgmt = _free_port(self.address), _free_port("127.0.0.1")
        # pebble's own HTTPS listener: a certificate from a CA made here (= acme_ca_bundle)
        self.ca = CA("flasksample pebble listener CA")
        leaf = self.ca.issue([], ips=[self.address, "127.0.0.1"])
        self.ca_file = self.dir / "pebble-listener-ca.pem"
        self.ca_file.write_bytes(self.ca.pem)
        leaf.write(self.dir / "listener.pem", self.dir / "listener.key")
        config = self.dir / "pebble.json"
        config.write_text(json.dumps({"pebble": {
            "listenAddress": f"{self.address}:{self.port}",
            "managementListenAddress": f"127.0.0.1:{self.mgmt}",
            "certificate": str(self.dir / "listener.pem"), "privateKey": str(self.dir / "listener.key"),
            "httpPort": 80, "tlsPort": 443, "ocspResponderURL": "",
            "externalAccountBindingRequired": False}}))
        self._spawn(["pebble-challtestsrv", "-defaultIPv4", "", "-defaultIPv6", "",
                     "-dns01", f"127.0.0.1:{self.dns_port}", "-http01", "", "-https01", "",
                     "-tlsalpn01", "", "-management", f"127.0.0.1:{self.dns_mgmt}"],
                    "127.0.0.1", self.dns_mgmt, {})
        self._spawn(["pebble", "-config", str(config), "-dnsserver", f"127.0.0.1:{self.dns_port}"],
                    self.address, self.port,
                    {"PEBBLE_VA_NOSLEEP": "1", "PEBBLE_WFE_NONCEREJECT": "0",
                     "PEBBLE_AUTHZREUSE": "0"})
        return self

    def _spawn(self, argv, address, port, env) -> None:
        log = self.dir / f"{argv[0]}.log"
        proc = subprocess.Popen(argv, stdout=log.open("w"), stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, env={**os.environ, **env},
                                preexec_fn=_die_with_parent)
        self.procs.append(proc)
        _wait_port(address, port, proc, log)

    def stop(self) -> None:
        for proc in reversed(self.procs):
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
        subprocess.run(["ip", "link", "delete", self.link], capture_output=True)

    # -- what tests use -------------------------------------------------------------------------
    @property
    def directory(self) -> str:
        return f"https://{self.address}:{self.port}/dir"

    def add_a(self, name: str, address: str) -> None:
        """Make `name` resolve to `address` for pebble's validation."""
        body = json.dumps({"host": name, "addresses": [address]}).encode()
        urllib.request.urlopen(urllib.request.Request(
            f"http://127.0.0.1:{self.dns_mgmt}/add-a", data=body, method="POST"), timeout=5).read()

    def root_pem(self) -> bytes:
        """The root that signs issued certificates (new at every pebble start)."""
        ctx = ssl.create_default_context(cafile=str(self.ca_file))
        with urllib.request.urlopen(f"https://127.0.0.1:{self.mgmt}/roots/0", context=ctx,
                                    timeout=5) as resp:
            return resp.read()
