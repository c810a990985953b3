"""Sending one signed event to a subscriber's endpoint, safely.

The host name is resolved here, every address it resolves to is vetted
(`domain.destinations`), and the connection goes to the vetted address itself -- with the
name kept for the Host header, TLS SNI and certificate check -- so a DNS answer that changes
after the check (rebinding) cannot send the request anywhere else. Redirects are not followed,
every call has connect and read timeouts, and only a short excerpt of the answer is read.
"""
from __future__ import annotations

import socket
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Callable

import urllib3
from urllib3.exceptions import HTTPError as Urllib3Error

from service.domain.delivery import AttemptResult, parse_retry_after
from service.domain.destinations import UnsafeDestination, vet_addresses
from service.event_urls import parse_event_url

EXCERPT_CHARS = 256
USER_AGENT = "ucmha-webhooks/1"

Resolver = Callable[[str, int], list[str]]


def resolve(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


@dataclass(frozen=True)
class SentAttempt:
    result: AttemptResult
    refused: bool
    latency_ms: int | None
    excerpt: str | None


@dataclass
class EventSender:
    connect_timeout_s: float
    read_timeout_s: float
    allow_loopback: bool
    resolver: Resolver = resolve
    ca_certs: str | None = None  # None: the system's trust store

    def send(self, url: str, headers: dict[str, str], body: bytes, now: datetime) -> SentAttempt:
        try:
            destination = parse_event_url(url, allow_loopback=self.allow_loopback)
            try:
                addresses = self.resolver(destination.host, destination.port)
            except (socket.gaierror, UnicodeError) as exc:
                return SentAttempt(AttemptResult(None, f"cannot resolve {destination.host}: {exc}"), False, None, None)
            vetted = vet_addresses(destination.host, addresses, allow_loopback=self.allow_loopback)
        except UnsafeDestination as exc:
            return SentAttempt(AttemptResult(None, f"refused: {exc.detail}"), True, None, None)
        address = str(vetted[0])
        timeout = urllib3.Timeout(connect=self.connect_timeout_s, read=self.read_timeout_s)
        common = dict(port=destination.port, timeout=timeout, retries=False, maxsize=1)
        if destination.scheme == "https":
            pool: urllib3.HTTPConnectionPool = urllib3.HTTPSConnectionPool(
                address, server_hostname=destination.host, assert_hostname=destination.host,
                cert_reqs="CERT_REQUIRED", ca_certs=self.ca_certs, **common)
        else:
            pool = urllib3.HTTPConnectionPool(address, **common)
        request_headers = {**headers, "Host": destination.host_header, "User-Agent": USER_AGENT,
                           "Content-Type": "application/json"}
        started = time.perf_counter()
        try:
            with pool:
                response = pool.urlopen("POST", destination.target, body=body, headers=request_headers,
                                        redirect=False, preload_content=False, assert_same_host=False)
                try:
                    excerpt = response.read(EXCERPT_CHARS * 4, decode_content=True)[:EXCERPT_CHARS * 4]
                finally:
                    response.release_conn()
                    response.close()
        except (Urllib3Error, OSError) as exc:
            latency = int((time.perf_counter() - started) * 1000)
            return SentAttempt(AttemptResult(None, f"{type(exc).__name__}: {exc}"[:500]), False, latency, None)
        latency = int((time.perf_counter() - started) * 1000)
        text = excerpt.decode("utf-8", errors="replace")[:EXCERPT_CHARS] if excerpt else None
        status = response.status
        error = None if 200 <= status < 300 else f"HTTP {status}"
        retry_after = parse_retry_after(response.headers.get("Retry-After"), now) if error else None
        return SentAttempt(AttemptResult(status, error, retry_after), False, latency, text)
