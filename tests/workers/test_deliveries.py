"""Delivering events to a real HTTP endpoint (the simulator's receiver): signed, retried, logged, in order."""
from __future__ import annotations

import dataclasses
import http.server
import random
import threading
from datetime import timedelta

import pytest
from sqlalchemy import select, update
from standardwebhooks import Webhook

from service.models import Alarm, EventDelivery, EventSubscription, utcnow
from service.security import SecretBox
from harness.webhooks import role_changed, signed_headers
from workers import deliveries
from workers.event_sender import EXCERPT_CHARS, EventSender
from tests.formed_pair import PRIMARY, SECONDARY, form_pair

BASE = "/api/v1/event-subscriptions"


@pytest.fixture
def loopback_settings(settings):
    return settings.with_overrides(event_allow_loopback=True, event_retry_base_delay_s=0.5,
                                   event_retry_max_delay_s=5.0, event_connect_timeout_s=1.0,
                                   event_read_timeout_s=2.0)


@pytest.fixture
def loopback_app(loopback_settings, session_factory, enqueued):
    from service.app import create_app
    app = create_app(loopback_settings, session_factory=session_factory, enqueue=enqueued, broker_check=lambda: "ok")
    app.testing = True
    return app


@pytest.fixture
def api(loopback_app):
    return loopback_app.test_client()


@pytest.fixture
def pair(api, tenant):
    return form_pair(api, tenant)


def subscribe(api, tenant, url, events=("pair.switched",)):
    r = api.post(BASE, json={"url": url, "events": list(events)}, headers=tenant.admin())
    assert r.status_code == 201, r.get_json()
    return r.get_json()


def failover(api, pair, mac=SECONDARY, sequence=1, at="2026-11-24T09:30:00Z"):
    body = role_changed(at, sequence, "force_switch")
    r = api.post(f"/api/v1/webhooks/ucm/{mac}", data=body, headers=signed_headers(pair["secrets"][mac], body))
    assert r.status_code == 202, r.get_json()


class Queue(list):
    def __call__(self, task, args, countdown):
        self.append((task, tuple(args), countdown))


def run(session_factory, settings, sub_id, pair_id, queue=None, owner="w1", sender=None):
    return deliveries.run_lane(session_factory, settings, sender or deliveries.sender_for(settings), sub_id, pair_id,
                               owner, queue if queue is not None else Queue(), rng=random.Random(7))


def rows(db_session, sub_id):
    db_session.expire_all()
    return db_session.execute(select(EventDelivery).where(EventDelivery.subscription_id == sub_id)
                              .order_by(EventDelivery.id)).unique().scalars().all()


def make_due(db_session, sub_id):
    db_session.execute(update(EventDelivery).where(EventDelivery.subscription_id == sub_id)
                       .values(next_attempt_at=utcnow() - timedelta(seconds=1)))
    db_session.commit()


def test_a_failover_is_delivered_once_signed_and_logged(api, tenant, pair, sim, session_factory, db_session,
                                                         loopback_settings):
    sub = subscribe(api, tenant, sim.receiver_url("pager"))
    sim.configure_receiver("pager", [sub["secret"]])
    failover(api, pair)
    assert run(session_factory, loopback_settings, sub["id"], pair["id"]) == "idle"
    assert run(session_factory, loopback_settings, sub["id"], pair["id"]) == "idle"  # nothing owed: nothing sent
    arrivals = sim.receiver("pager")["arrivals"]
    assert [(a["type"], a["verified"], a["answered"]) for a in arrivals] == [("pair.switched", [0], 204)]
    [delivery] = rows(db_session, sub["id"])
    assert delivery.state == "delivered" and arrivals[0]["webhook_id"] == delivery.event.public_id
    assert arrivals[0]["event"]["data"]["to"] == {"mac": SECONDARY, "site": "secondary"}
    [attempt] = delivery.attempt_log
    assert (attempt.outcome, attempt.status_code, attempt.url) == ("delivered", 204, sub["url"])
    assert attempt.latency_ms is not None and attempt.latency_ms >= 0


def test_a_failing_receiver_gets_the_event_once_it_recovers_with_every_attempt_logged(
        api, tenant, pair, sim, session_factory, db_session, loopback_settings):
    sub = subscribe(api, tenant, sim.receiver_url("flaky"))
    sim.configure_receiver("flaky", [sub["secret"]], [{"status": 500}, {"status": 503}])
    failover(api, pair)
    queue = Queue()
    assert run(session_factory, loopback_settings, sub["id"], pair["id"], queue) == "pending"
    [(task, args, countdown)] = queue
    assert task == "ucmha.deliver_events" and args == (sub["id"], pair["id"]) and 0 <= countdown <= 0.5
    [delivery] = rows(db_session, sub["id"])
    assert delivery.state == "pending" and delivery.attempts == 1 and delivery.last_status == 500
    # not due yet: the task waits instead of calling
    db_session.execute(update(EventDelivery).where(EventDelivery.id == delivery.id)
                       .values(next_attempt_at=utcnow() + timedelta(seconds=30)))
    db_session.commit()
    queue.clear()
    assert run(session_factory, loopback_settings, sub["id"], pair["id"], queue) == "waiting"
    assert queue == [] and len(sim.receiver("flaky")["arrivals"]) == 1  # the retry's own message comes back
    for expected in ("pending", "idle"):
        make_due(db_session, sub["id"])
        assert run(session_factory, loopback_settings, sub["id"], pair["id"]) == expected
    arrivals = sim.receiver("flaky")["arrivals"]
    assert [a["answered"] for a in arrivals] == [500, 503, 204]
    assert len({a["webhook_id"] for a in arrivals}) == 1  # one webhook-id for every attempt of the event
    [delivery] = rows(db_session, sub["id"])
    assert delivery.state == "delivered" and delivery.attempts == 3 == len(delivery.attempt_log)
    assert [(a.outcome, a.status_code) for a in delivery.attempt_log] == [("failed", 500), ("failed", 503),
                                                                          ("delivered", 204)]
    listed = api.get(f"{BASE}/{sub['id']}/deliveries", headers=tenant.support()).get_json()["items"][0]
    assert [a["status_code"] for a in listed["attempt_log"]] == [500, 503, 204]
    assert listed["attempt_log"][0]["error"] == "HTTP 500" and listed["attempt_log"][0]["retry_in_s"] is not None


def test_retry_after_is_honoured(api, tenant, pair, sim, session_factory, db_session, loopback_settings):
    sub = subscribe(api, tenant, sim.receiver_url("busy"))
    sim.configure_receiver("busy", [sub["secret"]], [{"status": 429, "retry_after": "120"}])
    failover(api, pair)
    queue = Queue()
    before = utcnow()
    assert run(session_factory, loopback_settings, sub["id"], pair["id"], queue) == "pending"
    [delivery] = rows(db_session, sub["id"])
    assert delivery.next_attempt_at >= before + timedelta(seconds=120)
    # a retry that far away is the sweeper's: not before it is due, then once
    assert queue == []
    assert deliveries.sweep(session_factory, Queue(), clock=lambda: before + timedelta(seconds=100)) == 0
    due = Queue()
    assert deliveries.sweep(session_factory, due, clock=lambda: delivery.next_attempt_at + timedelta(seconds=11)) == 1
    assert due == [("ucmha.deliver_events", (sub["id"], pair["id"]), 0.0)]


def test_events_of_a_pair_go_out_in_order_behind_a_failing_head(api, tenant, pair, sim, session_factory, db_session,
                                                                 loopback_settings):
    sub = subscribe(api, tenant, sim.receiver_url("ordered"))
    sim.configure_receiver("ordered", [sub["secret"]], [{"status": 500}])
    failover(api, pair, SECONDARY, 1, "2026-11-24T09:30:00Z")
    failover(api, pair, PRIMARY, 1, "2026-11-24T09:40:00Z")
    assert run(session_factory, loopback_settings, sub["id"], pair["id"]) == "pending"
    first, second = rows(db_session, sub["id"])
    assert (first.state, second.state) == ("pending", "pending") and second.attempt_log == []
    make_due(db_session, sub["id"])
    assert run(session_factory, loopback_settings, sub["id"], pair["id"]) == "idle"
    arrivals = sim.receiver("ordered")["arrivals"]
    assert [a["event"]["data"]["to"]["mac"] for a in arrivals] == [SECONDARY, SECONDARY, PRIMARY]
    assert [d.state for d in rows(db_session, sub["id"])] == ["delivered", "delivered"]


def test_a_subscription_that_fails_for_a_day_is_disabled_with_an_alarm_and_patch_reenables_it(
        api, tenant, pair, sim, session_factory, db_session, loopback_settings, enqueued):
    sub = subscribe(api, tenant, sim.receiver_url("dead"))
    watcher = subscribe(api, tenant, "https://watcher.example.com/in", events=("alarm.raised",))
    sim.configure_receiver("dead", [sub["secret"]], [{"status": 500}])
    failover(api, pair)
    # the delivery has been failing for a whole day: this attempt is its last
    db_session.execute(update(EventDelivery).where(EventDelivery.subscription_id == sub["id"])
                       .values(give_up_at=utcnow() - timedelta(seconds=1), attempts=40))
    db_session.commit()
    queue = Queue()
    assert run(session_factory, loopback_settings, sub["id"], pair["id"], queue) == "failed"
    [delivery] = rows(db_session, sub["id"])
    assert delivery.state == "failed" and delivery.attempts == 41
    subscription = db_session.get(EventSubscription, sub["id"])
    assert subscription.enabled is False and "could not be delivered" in subscription.disabled_reason
    kind = f"event_subscription_disabled_{sub['id']}"
    assert db_session.execute(select(Alarm).where(Alarm.pair_id == pair["id"], Alarm.kind == kind,
                                                  Alarm.closed_at.is_(None))).scalar_one()
    # the alarm is itself an event for the other subscription, enqueued after the commit
    raised = [d for d in rows(db_session, watcher["id"]) if d.event.type == "alarm.raised"]
    assert raised and raised[0].event.payload["data"]["alarm"] == kind
    assert ("ucmha.deliver_events", (watcher["id"], pair["id"]), 0.0) in queue
    # disabled: another failover is not queued for it, and its lane sends nothing
    failover(api, pair, PRIMARY, 1, "2026-11-24T09:40:00Z")
    assert len(rows(db_session, sub["id"])) == 1
    assert run(session_factory, loopback_settings, sub["id"], pair["id"]) == "idle"
    r = api.patch(f"{BASE}/{sub['id']}", json={"enabled": True}, headers=tenant.admin())
    assert r.status_code == 200 and r.get_json()["enabled"] is True
    assert db_session.execute(select(Alarm).where(Alarm.kind == kind, Alarm.closed_at.is_(None))).first() is None
    # the failed delivery is the admin's to redeliver
    r = api.post(f"{BASE}/{sub['id']}/deliveries/{delivery.id}/redeliver", headers=tenant.admin())
    assert r.status_code == 202
    assert run(session_factory, loopback_settings, sub["id"], pair["id"]) == "idle"
    assert [a["answered"] for a in sim.receiver("dead")["arrivals"]] == [500, 204]


def test_rotation_signs_with_both_secrets_during_the_overlap_only(api, tenant, pair, sim, session_factory, db_session,
                                                                  loopback_settings):
    sub = subscribe(api, tenant, sim.receiver_url("rotating"))
    new = api.post(f"{BASE}/{sub['id']}/secret", headers=tenant.admin()).get_json()["secret"]
    sim.configure_receiver("rotating", [sub["secret"], new])
    failover(api, pair)
    assert run(session_factory, loopback_settings, sub["id"], pair["id"]) == "idle"
    [arrival] = sim.receiver("rotating")["arrivals"]
    assert arrival["signatures"] == 2 and arrival["verified"] == [0, 1]
    # the signer at any moment of the overlap, and just after it
    subscription = db_session.get(EventSubscription, sub["id"])
    box = SecretBox(loopback_settings.encryption_key)
    rotated_at = subscription.previous_secret_valid_until - timedelta(hours=24)
    for offset, old_signs in ((timedelta(hours=23, minutes=59, seconds=59), True),
                              (timedelta(hours=24, seconds=1), False)):
        at = rotated_at + offset
        header = deliveries.signatures(subscription, box, "evt_x", at, "{}").split()
        assert Webhook(new).sign("evt_x", at, "{}") in header
        assert (Webhook(sub["secret"]).sign("evt_x", at, "{}") in header) is old_signs
    # once the overlap is over, an old-secret-only receiver stops verifying
    subscription.previous_secret_valid_until = utcnow() - timedelta(seconds=1)
    db_session.commit()
    failover(api, pair, PRIMARY, 1, "2026-11-24T09:40:00Z")
    sim.configure_receiver("rotating", [sub["secret"], new])
    run(session_factory, loopback_settings, sub["id"], pair["id"])
    latest = sim.receiver("rotating")["arrivals"][-1]
    assert latest["signatures"] == 1 and latest["verified"] == [1]


def test_a_worker_killed_mid_delivery_loses_nothing(api, tenant, pair, sim, session_factory, db_session,
                                                    loopback_settings):
    sub = subscribe(api, tenant, sim.receiver_url("crash"))
    sim.configure_receiver("crash", [sub["secret"]])
    failover(api, pair)
    # A worker leased the head and died before recording anything.
    with session_factory() as session:
        claim = deliveries._lease_head(session, loopback_settings, sub["id"], pair["id"], "dead-worker", utcnow())
        session.commit()
    assert isinstance(claim, deliveries.Claim)
    # Another worker leaves the leased delivery alone ...
    assert run(session_factory, loopback_settings, sub["id"], pair["id"], owner="w2") == "idle"
    assert sim.receiver("crash")["arrivals"] == []
    # ... until the lease has expired; the sweeper then hands the lane to the broker again.
    queue = Queue()
    later = utcnow() + timedelta(seconds=deliveries.lease_s(loopback_settings) + 1)
    assert deliveries.sweep(session_factory, queue, clock=lambda: later) == 1
    assert queue == [("ucmha.deliver_events", (sub["id"], pair["id"]), 0.0)]
    assert deliveries.sweep(session_factory, Queue(), clock=lambda: later) == 0  # not twice
    assert run(session_factory, loopback_settings, sub["id"], pair["id"], owner="w2") == "idle"
    [delivery] = rows(db_session, sub["id"])
    assert delivery.state == "delivered" and [a["webhook_id"] for a in sim.receiver("crash")["arrivals"]] == [
        delivery.event.public_id]


def test_dns_rebinding_is_refused_at_delivery_time(api, tenant, pair, session_factory, db_session, loopback_settings,
                                                   settings):
    sub = subscribe(api, tenant, "https://hooks.example.com/in")
    failover(api, pair)
    answers = {"hooks.example.com": ["93.184.216.34", "127.0.0.1"]}  # one public answer, one rebound to loopback
    sender = EventSender(1.0, 1.0, allow_loopback=False, resolver=lambda host, port: answers[host])
    assert run(session_factory, settings, sub["id"], pair["id"], sender=sender) == "pending"
    [delivery] = rows(db_session, sub["id"])
    [attempt] = delivery.attempt_log
    assert attempt.outcome == "refused" and "loopback" in attempt.error and attempt.status_code is None


@pytest.mark.parametrize("address,what", [
    ("127.0.0.1", "loopback"), ("10.0.0.8", "private"), ("172.16.5.4", "private"), ("192.168.0.1", "private"),
    ("169.254.169.254", "metadata"), ("169.254.1.1", "link-local"), ("::1", "loopback"), ("fe80::1", "link-local"),
    ("fc00::1", "private"), ("::ffff:127.0.0.1", "loopback"), ("0.0.0.0", "unspecified"),
])
def test_the_sender_refuses_non_public_addresses_without_connecting(address, what):
    resolved = []
    sender = EventSender(0.5, 0.5, allow_loopback=False,
                         resolver=lambda host, port: resolved.append(host) or [address])
    sent = sender.send("https://innocent.example.com/hook", {}, b"{}", utcnow())
    assert sent.refused and sent.result.status is None and what in sent.result.error
    assert resolved == ["innocent.example.com"]


def test_the_sender_judges_and_resolves_the_host_in_its_ascii_form():
    """The same normalization as at save time (IDNA / UTS 46): full-width digits are ASCII ones."""
    resolved = []
    sender = EventSender(0.5, 0.5, allow_loopback=False,
                         resolver=lambda host, port: resolved.append(host) or ["127.0.0.1"])
    sent = sender.send("https://\uff11\uff12\uff17.\uff10.\uff10.\uff11/hook", {}, b"{}", utcnow())
    assert sent.refused and "loopback" in sent.result.error and resolved == []  # refused before any DNS
    sent = sender.send("https://B\u00fccher.example/hook", {}, b"{}", utcnow())
    assert sent.refused and resolved == ["xn--bcher-kva.example"]
    development = EventSender(0.5, 0.5, allow_loopback=True, resolver=sender.resolver)
    for url in ("http://metadata.google.internal/", "http://nas.local/", "http://intranet/"):
        sent = development.send(url, {}, b"{}", utcnow())
        assert sent.refused and "local or internal" in sent.result.error
    assert resolved == ["xn--bcher-kva.example"]


def test_the_sender_connects_to_the_address_it_vetted(sim):
    """The name is resolved once, by us; the request goes to that address with the name as Host."""
    calls = []
    sender = EventSender(1.0, 2.0, allow_loopback=True,
                         resolver=lambda host, port: calls.append((host, port)) or ["127.0.0.1"])
    sim.configure_receiver("vetted", [])
    url = f"http://receiver.invalid:{sim.port}/receiver/vetted"  # resolvable by nothing but our resolver
    sent = sender.send(url, {"webhook-id": "evt_1"}, b"{}", utcnow())
    assert calls == [("receiver.invalid", sim.port)]
    assert sent.result.status == 401  # it arrived (unsigned, so the receiver refused it)
    assert sim.receiver("vetted")["arrivals"][0]["webhook_id"] == "evt_1"


class _Verbose(http.server.BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802 - http.server's name
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        body = ("x" * 100_000).encode()
        self.send_response(500)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):  # quiet
        pass


def test_only_a_short_excerpt_of_the_answer_is_kept():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Verbose)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        sender = EventSender(1.0, 2.0, allow_loopback=True)
        sent = sender.send(f"http://127.0.0.1:{server.server_port}/hook", {}, b"{}", utcnow())
    finally:
        server.shutdown()
        server.server_close()
    assert sent.result.status == 500 and len(sent.excerpt) == EXCERPT_CHARS


def test_a_slow_receiver_times_out(sim):
    sim.configure_receiver("slow", [], [{"status": 204, "delay_ms": 1500}])
    sender = EventSender(1.0, 0.3, allow_loopback=True)
    sent = sender.send(sim.receiver_url("slow"), {}, b"{}", utcnow())
    assert sent.result.status is None and "Timeout" in sent.result.error


def _self_signed(tmp_path, name):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = utcnow()
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(hours=1))
            .not_valid_after(now + timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return str(cert_file), str(key_file)


class _Ok(http.server.BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802 - http.server's name
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.server.hosts.append(self.headers["Host"])
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_https_goes_to_the_vetted_address_and_checks_the_certificate_against_the_name(tmp_path, settings):
    import ssl

    cert, key = _self_signed(tmp_path, "hooks.example.test")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Ok)
    server.hosts = []
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_port
    try:
        resolver = {"hooks.example.test": ["127.0.0.1"], "other.example.test": ["127.0.0.1"]}
        # Our CA comes from the setting (UCMHA_EVENT_CA_BUNDLE), as a worker builds its sender.
        configured = deliveries.sender_for(settings.with_overrides(event_ca_bundle=cert, event_allow_loopback=True))
        sender = dataclasses.replace(configured, resolver=lambda h, p: resolver[h])
        sent = sender.send(f"https://hooks.example.test:{port}/in", {}, b"{}", utcnow())
        assert sent.result.status == 204, sent.result.error
        assert server.hosts == [f"hooks.example.test:{port}"]
        # the same address under a name the certificate does not cover: refused by TLS, nothing sent
        wrong = sender.send(f"https://other.example.test:{port}/in", {}, b"{}", utcnow())
        assert wrong.result.status is None and "SSL" in wrong.result.error and len(server.hosts) == 1
        # and without our CA (the system trust store), the self-signed certificate is refused
        untrusted = EventSender(1.0, 2.0, allow_loopback=True, resolver=lambda h, p: resolver[h])
        assert untrusted.send(f"https://hooks.example.test:{port}/in", {}, b"{}", utcnow()).result.status is None
    finally:
        server.shutdown()
        server.server_close()
