"""Rate limits against a real Redis (db 15): 429 problem+json with Retry-After, per-key buckets."""
from __future__ import annotations

import hashlib
import socket

import pytest
import redis
from limits.storage import MemoryStorage

from service.app import create_app
from service.security import new_alert_token
from tests.formed_pair import post_device
from tests.service.api.helpers import assert_problem
from harness.webhooks import role_changed, signed_headers, status

from .conftest import at, make_pair, post_signed, random_mac


def build_app(settings, session_factory, enqueued, **limits):  # type: ignore[no-untyped-def]
    app = create_app(settings.with_overrides(**limits), session_factory=session_factory, enqueue=enqueued,
                     broker_check=lambda: "ok")
    app.testing = True
    return app


def assert_rate_limited(response, window_s: int = 60) -> int:  # type: ignore[no-untyped-def]
    body = assert_problem(response, 429)
    assert body["title"] == "Too Many Requests"
    retry_after = response.headers.get("Retry-After")
    assert retry_after is not None and retry_after.isdigit(), response.headers
    assert 1 <= int(retry_after) <= window_s
    assert retry_after in body["detail"]
    return int(retry_after)


@pytest.fixture
def redis_client(redis_url):  # type: ignore[no-untyped-def]
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


def test_admin_api_is_limited_per_token(settings, session_factory, enqueued, redis_url, redis_client, tenant):
    app = build_app(settings, session_factory, enqueued, redis_url=redis_url, rate_limit_admin="3/minute")
    client = app.test_client()
    for _ in range(3):
        assert client.get("/api/v1/devices", headers=tenant.admin()).status_code == 200
    # One budget across the whole admin API, not per route.
    assert_rate_limited(client.post("/api/v1/devices", json={"mac": random_mac(), "model": "UCM6304",
                                                             "firmware": "1.0.15.8"}, headers=tenant.admin()))
    assert_rate_limited(client.get("/api/v1/ha-pairs", headers=tenant.admin()))
    # Another token (same organization) has its own budget.
    assert client.get("/api/v1/devices", headers=tenant.support()).status_code == 200

    # The bucket lives in Redis under a hash of the token, never the token itself.
    keys = [k.decode() for k in redis_client.scan_iter(match="*ucmha*", count=1000)]
    hashed = hashlib.sha256(b"ucmha-rate-limit:" + tenant.admin_token.encode()).hexdigest()[:32]
    assert any(hashed in k for k in keys), keys
    assert not any(tenant.admin_token in k or tenant.admin_token.removeprefix("ucmha_") in k for k in keys)


def test_limit_is_shared_by_apps_on_one_redis(settings, session_factory, enqueued, redis_url, tenant):
    """Two apps (two gunicorn workers, two hosts) count against the same budget."""
    one = build_app(settings, session_factory, enqueued, redis_url=redis_url, rate_limit_admin="2/minute")
    two = build_app(settings, session_factory, enqueued, redis_url=redis_url, rate_limit_admin="2/minute")
    assert one.test_client().get("/api/v1/devices", headers=tenant.admin()).status_code == 200
    assert two.test_client().get("/api/v1/devices", headers=tenant.admin()).status_code == 200
    assert_rate_limited(one.test_client().get("/api/v1/devices", headers=tenant.admin()))


def test_node_webhooks_are_limited_per_mac_counting_signed_ones(settings, session_factory, enqueued, redis_url,
                                                                tenant):
    app = build_app(settings, session_factory, enqueued, redis_url=redis_url, rate_limit_webhook="2/minute")
    client = app.test_client()
    devices = {}
    for _ in range(2):
        mac = random_mac()
        devices[mac] = post_device(client, tenant.admin(), mac)["webhook_secret"]
    mac, other = list(devices)

    def send(target: str, secret: str) -> int:
        body = role_changed(at(), 1, "force_switch")
        return client.post(f"/api/v1/webhooks/ucm/{target}", data=body, headers=signed_headers(secret, body))

    # Forged notifications do not use up the node's budget (anyone may know a MAC)...
    for _ in range(5):
        assert send(mac, "whsec_" + "A" * 44).status_code == 401
    # ...signed ones do (409: the device is in no pair, but the signature checked out).
    assert send(mac, devices[mac]).status_code == 409
    assert send(mac, devices[mac]).status_code == 409
    assert_rate_limited(send(mac, devices[mac]))
    # Any spelling of the MAC is the same node.
    assert_rate_limited(send(mac.replace(":", "-").lower(), devices[mac]))
    assert send(other, devices[other]).status_code == 409


class CommandCounter:
    """Counts the commands the limiter's Redis client sends (each one round trip to Redis)."""

    def __init__(self, app) -> None:  # type: ignore[no-untyped-def]
        client = app.extensions["ucmha_limiter"].storage.storage  # limits' RedisStorage -> redis.Redis
        self.commands: list[str] = []
        send = client.execute_command

        def counted(*args, **kwargs):  # type: ignore[no-untyped-def]
            self.commands.append(str(args[0]))
            return send(*args, **kwargs)

        client.execute_command = counted

    def take(self) -> list[str]:
        taken, self.commands[:] = list(self.commands), []
        return taken


def test_an_accepted_webhook_costs_one_redis_round_trip_and_a_forged_one_none(settings, session_factory, enqueued,
                                                                               redis_url, tenant):
    app = build_app(settings, session_factory, enqueued, redis_url=redis_url, rate_limit_webhook="3/minute")
    client = app.test_client()
    pair = make_pair(client, tenant)
    mac, secret = pair.primary, pair.secrets[pair.primary]
    counter = CommandCounter(app)
    # Forged: refused before the budget is touched, so not a single command.
    for _ in range(4):
        body = status(at(), 1, "active")
        assert post_signed(client, mac, "whsec_" + "A" * 44, body).status_code == 401
    assert counter.take() == []
    # Signed: checking and spending the budget together, one command (the increment-with-expiry).
    for sequence in (1, 2, 3):
        r = post_signed(client, mac, secret, status(at(), sequence, "active"))
        assert r.status_code == 202, r.get_json()
        assert len(counter.take()) == 1
    # The forged ones used none of it: the fourth signed one is the first refused.
    retry_after = assert_rate_limited(post_signed(client, mac, secret, status(at(), 4, "active")))
    assert retry_after <= 60


def test_node_webhooks_are_limited_in_memory_while_redis_is_down(settings, session_factory, enqueued, tenant):
    app = build_app(settings, session_factory, enqueued, redis_url=f"redis://127.0.0.1:{closed_port()}/15",
                    rate_limit_webhook="2/minute")
    client = app.test_client()
    pair = make_pair(client, tenant)
    mac, secret = pair.primary, pair.secrets[pair.primary]
    assert post_signed(client, mac, "whsec_" + "A" * 44, status(at(), 1, "active")).status_code == 401
    for sequence in (1, 2):
        r = post_signed(client, mac, secret, status(at(), sequence, "active"))
        assert r.status_code == 202, r.get_json()
    assert_rate_limited(post_signed(client, mac, secret, status(at(), 3, "active")))


def test_native_alerts_are_limited_per_alert_token(settings, session_factory, enqueued, redis_url, redis_client,
                                                   tenant):
    app = build_app(settings, session_factory, enqueued, redis_url=redis_url, rate_limit_alerts="2/minute")
    client = app.test_client()
    tokens = [post_device(client, tenant.admin(), random_mac())["alert_token"] for _ in range(2)]
    for i in range(2):
        r = client.post(f"/api/v1/webhooks/ucm-alerts/{tokens[0]}", json={"content": f"unknown text {i}"})
        assert r.status_code == 202, r.get_json()
    assert_rate_limited(client.post(f"/api/v1/webhooks/ucm-alerts/{tokens[0]}", json={"content": "more"}))
    assert client.post(f"/api/v1/webhooks/ucm-alerts/{tokens[1]}", json={"content": "x"}).status_code == 202
    keys = [k.decode() for k in redis_client.scan_iter(match="*ucmha*", count=1000)]
    assert not any(tokens[0] in k or tokens[0].removeprefix("ucmalert_") in k for k in keys)


def test_health_metrics_docs_and_dashboard_assets_are_not_limited(settings, session_factory, enqueued, redis_url,
                                                                   tenant):
    app = build_app(settings, session_factory, enqueued, redis_url=redis_url, rate_limit_admin="1/minute",
                    rate_limit_webhook="1/minute", rate_limit_alerts="1/minute")
    client = app.test_client()
    paths = ["/healthz", "/readyz", "/metrics", "/api/v1/openapi.json"]
    if "dashboard" in app.blueprints:
        paths.append("/dashboard/static/dashboard.js")
    for path in paths:
        for _ in range(4):
            r = client.get(path)
            assert r.status_code == 200, (path, r.status_code)


def test_429_is_counted_in_metrics(settings, session_factory, enqueued, redis_url):
    app = build_app(settings, session_factory, enqueued, redis_url=redis_url, rate_limit_alerts="1/minute")
    client = app.test_client()
    token = new_alert_token()  # unknown token: 401, but still one request of its budget
    assert client.post(f"/api/v1/webhooks/ucm-alerts/{token}", json={"content": "x"}).status_code == 401
    assert_rate_limited(client.post(f"/api/v1/webhooks/ucm-alerts/{token}", json={"content": "x"}))
    text = client.get("/metrics").get_data(as_text=True)
    assert 'ucmha_webhooks_total{outcome="rate_limited"}' in text
    assert 'status="429"' in text


# --- without Redis ----------------------------------------------------------------------------------


def test_memory_storage_without_redis(app):
    assert isinstance(app.extensions["ucmha_limiter"].storage, MemoryStorage)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_redis_outage_falls_back_to_memory_not_to_errors(settings, session_factory, enqueued, tenant):
    app = build_app(settings, session_factory, enqueued, redis_url=f"redis://127.0.0.1:{closed_port()}/15",
                    rate_limit_admin="2/minute")
    client = app.test_client()
    assert client.get("/api/v1/devices", headers=tenant.admin()).status_code == 200
    assert client.get("/api/v1/devices", headers=tenant.admin()).status_code == 200
    assert_rate_limited(client.get("/api/v1/devices", headers=tenant.admin()))


class FlakyStorage(MemoryStorage):
    """Memory storage that fails like an unreachable Redis while `down`."""

    down = False

    def incr(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        if self.down:
            raise redis.ConnectionError("unreachable")
        return super().incr(*args, **kwargs)


def test_spent_budgets_fall_back_to_memory_and_go_back_to_the_storage(monkeypatch):
    from limits import parse_many
    from werkzeug.exceptions import TooManyRequests

    from service.observability import ratelimit

    clock = [1000.0]
    monkeypatch.setattr(ratelimit.time, "monotonic", lambda: clock[0])
    shared = FlakyStorage()
    budgets = ratelimit.Budgets(shared, {"rate_limit_webhook": list(parse_many("2/minute"))}, fallback=True)
    shared.down = True
    budgets.spend("rate_limit_webhook", "mac:a")  # no error: counted in memory
    budgets.spend("rate_limit_webhook", "mac:a")
    with pytest.raises(TooManyRequests):
        budgets.spend("rate_limit_webhook", "mac:a")
    shared.down = False
    budgets.spend("rate_limit_webhook", "mac:b")  # before the retry time: still memory
    assert shared.get("LIMITER/ucmha/mac:b/rate_limit_webhook/2/1/minute") == 0
    clock[0] += ratelimit.Budgets.RETRY_S
    budgets.spend("rate_limit_webhook", "mac:b")  # the storage is back and used again
    assert shared.get("LIMITER/ucmha/mac:b/rate_limit_webhook/2/1/minute") == 1
