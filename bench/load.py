"""A small, bounded HTTP load generator that records every request's outcome.

Used by the zero-downtime tests (which count failures) and by the benchmarks (which also
report latency). Each request opens a new connection, as independent clients would; a
failure is a refused/reset connection, a timeout, or a 5xx answer. It only ever targets the
URL it is given (loopback or a sandbox host) and stops by itself after max_seconds or
max_requests.
"""
from __future__ import annotations

import http.client
import threading
import time
from dataclasses import dataclass
from urllib.parse import urlsplit


@dataclass(frozen=True)
class Sample:
    start: float            # seconds since the load started
    latency: float          # seconds
    status: int | None      # HTTP status, None when the request failed before an answer
    error: str | None
    body: str = ""

    @property
    def failed(self) -> bool:
        return self.status is None or self.status >= 500


class Load:
    """`with Load(url) as load: ...` keeps `concurrency` clients busy until the block ends."""

    def __init__(self, url: str, concurrency: int = 8, timeout: float = 5.0,
                 max_seconds: float = 180.0, max_requests: int = 500_000, keep_body: bool = False):
        parts = urlsplit(url)
        self.host, self.port = parts.hostname, parts.port or 80
        self.path = parts.path or "/"
        self.concurrency, self.timeout = concurrency, timeout
        self.max_seconds, self.max_requests = max_seconds, max_requests
        self.keep_body = keep_body
        self.samples: list[Sample] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self.t0 = 0.0

    def connection(self) -> http.client.HTTPConnection:
        """A new connection per request (tests override it for HTTPS)."""
        return http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)

    def _one(self) -> Sample:
        start = time.monotonic()
        conn = self.connection()
        try:
            conn.request("GET", self.path, headers={"Connection": "close"})
            resp = conn.getresponse()
            body = resp.read()
            return Sample(start - self.t0, time.monotonic() - start, resp.status, None,
                          body.decode(errors="replace") if self.keep_body else "")
        except Exception as e:  # every kind of failure is a data point here
            return Sample(start - self.t0, time.monotonic() - start, None, type(e).__name__)
        finally:
            conn.close()

    def _client(self) -> None:
        while not self._stop.is_set():
            sample = self._one()
            with self._lock:
                self.samples.append(sample)
                if len(self.samples) >= self.max_requests or sample.start > self.max_seconds:
                    self._stop.set()

    def __enter__(self) -> "Load":
        self.t0 = time.monotonic()
        self._threads = [threading.Thread(target=self._client, daemon=True)
                         for _ in range(self.concurrency)]
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(self.timeout + 1)

    def now(self) -> float:
        return time.monotonic() - self.t0

    @property
    def failures(self) -> list[Sample]:
        return [s for s in self.samples if s.failed]

    def summary(self) -> dict:
        lat = sorted(s.latency for s in self.samples) or [0.0]

        def pct(p):
            return lat[min(len(lat) - 1, int(p * len(lat)))]

        return {"sent": len(self.samples), "failed": len(self.failures),
                "p50_ms": pct(0.50) * 1000, "p99_ms": pct(0.99) * 1000, "max_ms": lat[-1] * 1000}
