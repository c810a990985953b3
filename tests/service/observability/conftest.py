"""Fixtures of the observability tests: captured JSON logs, scraped metrics, a paired device couple."""
from __future__ import annotations

import io
import json
import logging
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

from service.observability.logging import configure_logging
from service.settings import Settings
from tests.conftest import REDIS_URL, unavailable
from tests.formed_pair import form_pair
from harness.webhooks import signed_headers


def at(seconds: float = 0.0) -> str:
    """RFC 3339 UTC `seconds` from now."""
    moment = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(seconds=seconds)
    return moment.isoformat().replace("+00:00", "Z")


def post_signed(client: Any, mac: str, secret: str, body: str, **kw: Any) -> Any:
    return client.post(f"/api/v1/webhooks/ucm/{mac}", data=body, headers=signed_headers(secret, body, **kw))


def random_mac() -> str:
    """Random, locally administered: no clash with other tests, nor with Redis keys of earlier runs."""
    return ":".join(f"{b:02X}" for b in (0x02, *secrets.token_bytes(5)))


@dataclass
class LogCapture:
    buffer: io.StringIO

    def text(self) -> str:
        for handler in logging.getLogger().handlers:
            handler.flush()
        return self.buffer.getvalue()

    def lines(self) -> list[dict[str, Any]]:
        """Every line parsed as JSON (a line that is not JSON fails the test)."""
        out = []
        for line in self.text().splitlines():
            if line.strip():
                out.append(json.loads(line))
        return out

    def access(self) -> list[dict[str, Any]]:
        return [line for line in self.lines() if line.get("logger") == "ucmha.access"]

    def clear(self) -> None:
        self.buffer.seek(0)
        self.buffer.truncate()


@pytest.fixture
def logs() -> Iterator[LogCapture]:
    """Route the root logger's JSON handler into a buffer at DEBUG (call after the app is built:
    create_app configures logging itself)."""
    capture = LogCapture(io.StringIO())
    settings = Settings(env="test")

    def install(level: str = "DEBUG") -> LogCapture:
        configure_logging(settings, stream=capture.buffer, level=level)
        return capture

    capture.install = install  # type: ignore[attr-defined]
    yield capture
    configure_logging(settings)  # back to stderr at the settings' level


class Scrape:
    """One /metrics answer, parsed."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.samples: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                self.samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value

    def value(self, name: str, **labels: str) -> float:
        return self.samples.get((name, tuple(sorted(labels.items()))), 0.0)

    def names(self) -> set[str]:
        return {name for name, _ in self.samples}


def scrape(client: Any, **headers: str) -> Scrape:
    r = client.get("/metrics", headers=headers)
    assert r.status_code == 200, r.get_data(as_text=True)
    assert r.content_type.startswith("text/plain"), r.content_type
    return Scrape(r.get_data(as_text=True))


@pytest.fixture
def redis_url() -> str:
    import redis

    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1, socket_timeout=1)
    try:
        client.ping()
    except redis.RedisError as exc:
        unavailable("Redis", exc)
    finally:
        client.close()
    return REDIS_URL


@dataclass
class PairedNodes:
    pair_id: int
    primary: str
    secondary: str
    secrets: dict[str, str]
    alert_tokens: dict[str, str]


def make_pair(client: Any, tenant: Any, *, custom_domain: str | None = None) -> PairedNodes:
    primary, secondary = random_mac(), random_mac()
    formed = form_pair(client, tenant, primary, secondary, domain=custom_domain or None)
    return PairedNodes(formed["id"], primary, secondary, formed["secrets"], formed["tokens"])
