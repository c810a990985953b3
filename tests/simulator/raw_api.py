"""A bare-bones caller of the simulator's upstream API, written straight from the spec.

The simulator tests use it instead of `workers.upstream` so that they exercise the server on
its own and can send deliberately wrong requests (bad signature, skewed timestamp, ...).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Mapping
from typing import Any

import requests

from harness.simulator import DEFAULT_CREDENTIALS


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def spec_signature(
    query: Mapping[str, str], client_id: str, client_secret: str, body: bytes
) -> str:
    """hex SHA-256 of "&k1=v1&k2=v2...&" (+ sha256hex(body) + "&" when there is a body)."""
    signed = dict(query, client_id=client_id, client_secret=client_secret)
    text = "&"
    for key in sorted(signed):
        text += f"{key}={signed[key]}&"
    if body:
        text += sha256_hex(body) + "&"
    return sha256_hex(text.encode())


class RawApi:
    def __init__(self, base_url: str, credentials: Mapping[str, str] = DEFAULT_CREDENTIALS) -> None:
        self.base_url = base_url
        self.credentials = dict(credentials)
        self.session = requests.Session()
        self.access_token: str | None = None
        self.refresh_token: str | None = None

    def close(self) -> None:
        self.session.close()

    def token_request(self, **overrides: str) -> dict[str, Any]:
        c = self.credentials
        hashed = sha256_hex(hashlib.md5(c["password"].encode()).hexdigest().encode())
        form = {
            "grant_type": "password",
            "username": c["username"],
            "password": hashed,
            "client_id": c["client_id"],
            "client_secret": c["client_secret"],
            **overrides,
        }
        response = self.session.post(self.base_url + "/oapi/oauth/token", data=form, timeout=5)
        response.raise_for_status()
        return response.json()

    def login(self) -> str:
        envelope = self.token_request()
        assert envelope["retCode"] == 0, envelope
        self.access_token = envelope["data"]["access_token"]
        self.refresh_token = envelope["data"]["refresh_token"]
        return self.access_token

    def post(
        self,
        endpoint: str,
        body: Mapping[str, Any] | bytes,
        *,
        token: str | None = None,
        timestamp_ms: int | None = None,
        signature: str | None = None,
        extra_params: Mapping[str, str] | None = None,
        timeout: float = 5.0,
    ) -> requests.Response:
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        if token is None:
            token = self.access_token or self.login()
        query = {
            "access_token": token,
            "timestamp": str(timestamp_ms if timestamp_ms is not None else int(time.time() * 1000)),
            **(extra_params or {}),
        }
        c = self.credentials
        query["signature"] = signature or spec_signature(
            query, c["client_id"], c["client_secret"], raw
        )
        return self.session.post(
            f"{self.base_url}/oapi/v1.0.0/{endpoint}",
            params=query,
            data=raw,
            headers={"Content-Type": "application/json"},
            timeout=timeout,
        )

    def call(self, endpoint: str, body: Mapping[str, Any] | bytes, **kwargs: Any) -> dict[str, Any]:
        """The envelope of a call that must come back as HTTP 200."""
        response = self.post(endpoint, body, **kwargs)
        assert response.status_code == 200, (response.status_code, response.text)
        return response.json()
