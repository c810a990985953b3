"""R11 rolling firmware upgrade through node reports (ha.status) and PATCH /devices."""
from __future__ import annotations

from datetime import timedelta

import pytest

from service import queries
from service.commands.context import CommandContext
from service.domain.firmware import FIRMWARE_UPGRADE_DEADLINE
from service.domain.procedures import parse_iso
from service.models import HaPair
from tests.lifecycle.helpers import Api, steps
from workers import alarms

V0, V1 = "1.0.15.8", "1.0.17.2"


@pytest.fixture
def api(client, tenant) -> Api:
    return Api(client, tenant)


@pytest.fixture
def running(api):
    p, s = api.device(), api.device()
    pair = api.pair(p, s)
    p.status("active")
    s.status("standby")
    return api, pair, p, s


def open_alarm_kinds(db_session, pair_id) -> dict[str, str]:
    db_session.expire_all()
    return {a.kind: a.detail for a in queries.open_alarms(db_session, pair_id)}


def test_rolling_upgrade_in_the_guides_order_raises_no_alarm(running, db_session):
    api, pair, p, s = running
    s.status("standby", "standalone", firmware=V1)
    view = api.get(pair["id"])
    proc = view["procedure"]
    assert proc["kind"] == "firmware_upgrade" and (proc["from"], proc["to"]) == (V0, V1)
    assert proc["stage"] == "standby_upgraded" and proc["next_step"] == "force_switch"
    assert view["alarms_open"] == 0

    s.claim("force_switch")
    assert api.get(pair["id"])["procedure"]["stage"] == "switched"
    p.status("standby", "standalone", firmware=V1)
    view = api.get(pair["id"])
    assert view["procedure"]["stage"] == "other_upgraded" and view["procedure"]["next_step"] == "full_backup"
    p.backup()
    view = api.get(pair["id"])
    assert view["procedure"]["stage"] == "backed_up" and view["procedure"]["next_step"] == "switch_back"
    p.claim("force_switch")
    view = api.get(pair["id"])
    assert view["active_mac"] == p.mac and view["status"] == "paired"
    assert view["procedure"]["state"] == "completed" and all(steps(view).values())
    assert view["alarms_open"] == 0 and open_alarm_kinds(db_session, pair["id"]) == {}
    kinds = [k for k in api.kinds(pair["id"]) if k.startswith("firmware_upgrade")]
    assert kinds[0] == "firmware_upgrade_started" and kinds[-1] == "firmware_upgrade_completed"
    assert kinds.count("firmware_upgrade_step") == 4


def test_active_upgraded_first_opens_a_mismatch_alarm(running, db_session):
    api, pair, p, s = running
    p.status("active", "standalone", firmware=V1)
    view = api.get(pair["id"])
    assert view["procedure"] is None
    alarms_now = open_alarm_kinds(db_session, pair["id"])
    assert "firmware_mismatch" in alarms_now and "Standby first" in alarms_now["firmware_mismatch"]
    s.status("standby", firmware=V1)
    assert "firmware_mismatch" not in open_alarm_kinds(db_session, pair["id"])


def test_patch_device_firmware_on_the_standby_starts_the_procedure(running, db_session):
    api, pair, p, s = running
    r = api.client.patch(f"/api/v1/devices/{s.mac}", json={"firmware": V1}, headers=api.h)
    assert r.status_code == 200, r.get_json()
    view = api.get(pair["id"])
    assert view["procedure"]["kind"] == "firmware_upgrade" and view["alarms_open"] == 0
    changed = [e for e in api.events(pair["id"]) if e["kind"] == "firmware_changed"]
    assert changed[-1]["detail"] == {"firmware": V1, "source": "api"}


def test_patch_device_firmware_on_the_active_first_is_a_mismatch(running, db_session):
    api, pair, p, s = running
    assert api.client.patch(f"/api/v1/devices/{p.mac}", json={"firmware": V1}, headers=api.h).status_code == 200
    assert "firmware_mismatch" in open_alarm_kinds(db_session, pair["id"])
    assert api.get(pair["id"])["procedure"] is None


def test_other_node_upgraded_while_still_active_is_a_warning(running, db_session):
    api, pair, p, s = running
    s.status("standby", firmware=V1)
    p.status("active", "standalone", firmware=V1)  # no force switch before
    view = api.get(pair["id"])
    proc = view["procedure"]
    assert proc["stage"] == "other_upgraded" and proc["warnings"]
    assert next(st for st in proc["steps"] if st["name"] == "force_switch")["how"] == "skipped"
    assert "firmware_upgrade_warning" in api.kinds(pair["id"])
    p.status("active", "paired")
    p.backup()
    view = api.get(pair["id"])
    assert view["procedure"]["state"] == "completed" and "firmware_mismatch" not in open_alarm_kinds(db_session, pair["id"])


def test_a_third_version_on_the_other_node_is_a_mismatch(running, db_session):
    api, pair, p, s = running
    s.status("standby", firmware=V1)
    s.claim("force_switch")
    p.status("standby", firmware="1.0.19.1")
    assert "firmware_mismatch" in open_alarm_kinds(db_session, pair["id"])


def test_unfinished_upgrade_opens_incomplete_alarm_with_what_is_left(running, db_session, session_factory, settings):
    api, pair, p, s = running
    s.status("standby", firmware=V1)
    s.claim("force_switch")
    started = db_session.get(HaPair, pair["id"]).procedure["started_at"]
    assert started

    def check(after):
        with session_factory() as session:
            row = session.get(HaPair, pair["id"])
            now = parse_iso(started) + after
            ctx = CommandContext(session=session, settings=settings, org_id=None, actor="scheduler",
                                 enqueue=lambda *a: None, clock=lambda: now)
            alarms.check_pair(ctx, row, settings)
            ctx.commit()

    check(timedelta(hours=1))
    assert "firmware_upgrade_incomplete" not in open_alarm_kinds(db_session, pair["id"])
    check(FIRMWARE_UPGRADE_DEADLINE + timedelta(minutes=1))
    detail = open_alarm_kinds(db_session, pair["id"])["firmware_upgrade_incomplete"]
    assert "left:" in detail and f"Upgrade {p.mac} to {V1}" in detail and "Primary" in detail
    # Finishing it closes the alarm.
    p.status("standby", firmware=V1)
    p.backup()
    p.claim("force_switch")
    assert "firmware_upgrade_incomplete" not in open_alarm_kinds(db_session, pair["id"])
    assert api.get(pair["id"])["procedure"]["state"] == "completed"
