import time
from dataclasses import FrozenInstanceError
from datetime import datetime, timezone

import pytest

from service.domain.alerts import SCAN_LIMIT, ParsedAlert, parse_alert
from tests.guide_history import GUIDE_ALARMS, GUIDE_SWITCH_LOG, GUIDE_SWITCH_LOG_LINES

PRIMARY = "00:0B:82:A4:6E:BF"
SECONDARY = "C0:74:AD:45:3B:10"
SENDER = "c074ad453b10"
TAKEN_OVER = ("role_changed", SECONDARY, None, None, None)


def fault(kind: str, state: str, at: str) -> tuple[str, str, str, str, str]:
    """What `shape` gives for a fault line of the Primary."""
    return ("fault", PRIMARY, kind, state, at)


def utc(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%d %H:%M:%S").replace(tzinfo=timezone.utc)


# -- the guide's alarm page, verbatim (图表 15) ---------------------------------------------

GUIDE_EXPECTED = {
    "异地告警 MAC: 000B82A46EBF -- WAN/LAN 2023-07-07 15:08:34故障恢复": fault("wan_lan", "cleared", "2023-07-07 15:08:34"),
    "异地告警 发生HA切换, MAC: C074AD453B10已经接管业务。": TAKEN_OVER,
    "异地告警 MAC: 000B82A46EBF -- WAN/LAN 2023-07-07 15:06:03连线断开故障": fault("wan_lan", "raised", "2023-07-07 15:06:03"),
    "异地告警 MAC: 000B82A46EBF -- WAN/LAN 2023-07-07 14:48:23故障恢复": fault("wan_lan", "cleared", "2023-07-07 14:48:23"),
    "异地告警 MAC: 000B82A46EBF -- WAN/LAN 2023-07-07 14:45:30连线断开故障": fault("wan_lan", "raised", "2023-07-07 14:45:30"),
    "异地告警 MAC: 000B82A46EBF -- HEARTBEAT 2023-07-07 14:13:24故障恢复": fault("heartbeat", "cleared", "2023-07-07 14:13:24"),
    "异地告警 MAC: 000B82A46EBF -- HEARTBEAT 2023-07-07 14:13:19故障恢复": fault("heartbeat", "cleared", "2023-07-07 14:13:19"),
    "异地告警 MAC: 000B82A46EBF -- HEARTBEAT 2023-07-07 14:13:14故障恢复": fault("heartbeat", "cleared", "2023-07-07 14:13:14"),
}


def shape(alert: ParsedAlert):
    at = alert.occurred_at.strftime("%Y-%m-%d %H:%M:%S") if alert.occurred_at else None
    return (alert.kind, alert.mac, alert.source, alert.state, at)


@pytest.mark.parametrize("alarm_time, name, kind, content", GUIDE_ALARMS)
def test_every_alarm_of_the_guide(alarm_time, name, kind, content):
    alert = parse_alert(name, SENDER, content)
    assert shape(alert) == GUIDE_EXPECTED[content]
    assert alert.raw == content
    # The alarm page's own type column agrees with what the text says.
    if alert.kind == "fault":
        assert alert.state == {"产生告警": "raised", "恢复正常": "cleared"}[kind]
        assert name == "HA故障"
    else:
        assert name == "HA倒换"


def test_every_distinct_guide_text_is_covered():
    assert {content for *_, content in GUIDE_ALARMS} == set(GUIDE_EXPECTED)


def test_a_switch_alarm_carries_no_reason_so_it_takes_the_conservative_one():
    alert = parse_alert("HA倒换", SENDER, "异地告警 发生HA切换, MAC: C074AD453B10已经接管业务。")
    assert alert.reason == "heart_beat_lost"
    assert alert.occurred_at is None


def test_fault_times_are_read_as_utc():
    alert = parse_alert("", SENDER, "异地告警 MAC: 000B82A46EBF -- WAN/LAN 2023-07-07 15:06:03连线断开故障")
    assert alert.occurred_at == datetime(2023, 7, 7, 15, 6, 3, tzinfo=timezone.utc)
    assert alert.reason is None


# Chinese variants without the prefix or with full-width punctuation, then the English firmware texts
# (assumed; see the module docstring). A switch text carries no reason, so it takes the conservative one.
FIRMWARE_TEXTS = [
    ("发生HA切换, MAC: C074AD453B10已经接管业务。", TAKEN_OVER),
    ("发生HA切换，MAC：C074AD453B10已经接管业务", TAKEN_OVER),
    ("发生HA切换, MAC: C0:74:AD:45:3B:10 已经接管业务。", TAKEN_OVER),
    ("MAC: 000B82A46EBF -- WAN/LAN 2023-07-07 15:06:03连线断开故障", fault("wan_lan", "raised", "2023-07-07 15:06:03")),
    ("MAC：000b82a46ebf -- HEARTBEAT 2023-07-07 14:13:24故障恢复", fault("heartbeat", "cleared", "2023-07-07 14:13:24")),
    ("异地告警 MAC: 000B82A46EBF -- HEARTBEAT 2023-07-07 14:13:24心跳断开故障", fault("heartbeat", "raised", "2023-07-07 14:13:24")),
    # English
    ("HA switchover occurred, MAC: C074AD453B10 has taken over the service.", TAKEN_OVER),
    ("Remote alarm HA switchover occurred, MAC: C074AD453B10 has taken over the service.", TAKEN_OVER),
    ("HA switch occurred, MAC: C074AD453B10 has taken over the business.", TAKEN_OVER),
    ("ha failover happened; mac: c0-74-ad-45-3b-10 taken over", TAKEN_OVER),
    ("MAC: 000B82A46EBF -- WAN/LAN 2023-07-07 15:06:03 link disconnected fault", fault("wan_lan", "raised", "2023-07-07 15:06:03")),
    ("Remote alarm MAC: 000B82A46EBF -- WAN/LAN 2023-07-07 15:08:34 fault recovered", fault("wan_lan", "cleared", "2023-07-07 15:08:34")),
    ("MAC: 000B82A46EBF -- HEARTBEAT 2023-07-07 14:13:24 fault recovered", fault("heartbeat", "cleared", "2023-07-07 14:13:24")),
    ("MAC: 000B82A46EBF -- HEARTBEAT 2023-07-07 14:13:24 heartbeat lost", fault("heartbeat", "raised", "2023-07-07 14:13:24")),
    ("MAC: 000B82A46EBF -- Heart Beat 2023-07-07T14:13:24 link down", fault("heartbeat", "raised", "2023-07-07 14:13:24")),
]


@pytest.mark.parametrize("content, expected", FIRMWARE_TEXTS)
def test_firmware_texts(content, expected):
    alert = parse_alert("", SENDER, content)
    assert shape(alert) == expected
    if alert.kind == "role_changed":
        assert alert.reason == "heart_beat_lost"


# -- the HA switch log -----------------------------------------------------------------------


@pytest.mark.parametrize("line, entry", list(zip(GUIDE_SWITCH_LOG_LINES, GUIDE_SWITCH_LOG, strict=True)))
def test_switch_log_lines_carry_their_reason_and_time(line, entry):
    at, mac, reason = entry
    alert = parse_alert("", SENDER, line)
    assert (alert.kind, alert.mac, alert.reason) == ("role_changed", mac, reason)
    assert alert.occurred_at == datetime.fromisoformat(at.replace("Z", "+00:00"))


def test_a_verbatim_switch_log_line_of_the_guide():
    line = "- 异地容灾 [2023-07-07 18:33:12] [HA Rearrange] UCM(C0:74:AD:45:3B:10) promotes to master, Reason: force switch"
    alert = parse_alert("", SENDER, line)
    assert (alert.kind, alert.mac, alert.reason, alert.occurred_at) == (
        "role_changed",
        SECONDARY,
        "force_switch",
        utc("2023-07-07 18:33:12"),
    )


def test_a_switch_log_line_without_its_time():
    alert = parse_alert(
        "", SENDER, "[HA Rearrange] UCM(00:0B:82:A4:6E:BF) promotes to master, Reason: heart beat lost"
    )
    assert (alert.kind, alert.mac, alert.reason, alert.occurred_at) == (
        "role_changed",
        PRIMARY,
        "heart_beat_lost",
        None,
    )


# -- state from the action when the text does not say ---------------------------------------


@pytest.mark.parametrize(
    "action, state",
    [("恢复正常", "cleared"), ("产生告警", "raised"), ("recovered", "cleared"), ("raised", "raised")],
)
def test_state_falls_back_to_the_action(action, state):
    alert = parse_alert(action, SENDER, "MAC: 000B82A46EBF -- WAN/LAN 2023-07-07 15:06:03")
    assert (alert.kind, alert.state) == ("fault", state)


def test_the_text_wins_over_the_action():
    alert = parse_alert("产生告警", SENDER, "MAC: 000B82A46EBF -- WAN/LAN 2023-07-07 15:08:34故障恢复")
    assert alert.state == "cleared"


def test_a_fault_whose_state_nobody_says_is_unclassified():
    alert = parse_alert("HA故障", SENDER, "MAC: 000B82A46EBF -- WAN/LAN 2023-07-07 15:06:03")
    assert alert.kind == "unclassified"


# -- garbage ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content",
    [
        "",
        "   ",
        "HA backup success!!",
        "HA external data synchronization success!!",
        "发生HA切换",  # no MAC: we do not guess which node took over
        "发生HA切换, MAC: C074AD45已经接管业务。",  # truncated MAC
        "MAC: 000B82A46EBF -- USB 2023-07-07 15:06:03连线断开故障",  # unknown source
        "[HA Rearrange] UCM(C0:74:AD:45:3B:10) promotes to master, Reason: cosmic rays",
        '{"action":"${ACTION}"}',
        "\x00\x01\x02\ufffd",
        "MAC: " * 1000,
    ],
)
def test_garbage_is_unclassified_with_the_senders_mac(content):
    alert = parse_alert("HA故障", SENDER, content)
    assert alert == ParsedAlert("unclassified", SECONDARY, None, None, None, None, content)


@pytest.mark.parametrize("content", [None, 42, b"bytes", ["list"]])
def test_non_string_content_does_not_raise(content):
    alert = parse_alert(None, None, content)  # type: ignore[arg-type]
    assert alert.kind == "unclassified"
    assert alert.mac is None
    assert isinstance(alert.raw, str)


@pytest.mark.parametrize("sender", ["", "${MAC}", "not a mac", None])
def test_an_unusable_sender_mac_gives_none(sender):
    assert parse_alert("", sender, "garbage").mac is None  # type: ignore[arg-type]


def test_the_mac_in_the_text_wins_over_the_sender():
    assert parse_alert("", "000b82a46ebf", "发生HA切换, MAC: C074AD453B10已经接管业务。").mac == SECONDARY


def test_an_impossible_date_keeps_the_fault_without_its_time():
    alert = parse_alert("", SENDER, "MAC: 000B82A46EBF -- WAN/LAN 2023-13-45 25:61:61连线断开故障")
    assert (alert.kind, alert.state, alert.occurred_at) == ("fault", "raised", None)


def test_a_mac_inside_a_longer_hex_run_is_not_taken():
    alert = parse_alert("", SENDER, "发生HA切换, MAC: C074AD453B10FF已经接管业务。")
    assert alert.kind == "unclassified"


def test_huge_inputs_are_fast_and_kept_whole_in_raw():
    huge = "异地告警 " + "MAC: 000B82A46E -- " * 200_000
    started = time.perf_counter()
    alert = parse_alert("", SENDER, huge)
    assert time.perf_counter() - started < 1.0
    assert alert.kind == "unclassified"
    assert alert.raw == huge


def test_an_alarm_past_the_scan_limit_is_not_looked_for():
    content = "x" * SCAN_LIMIT + "发生HA切换, MAC: C074AD453B10已经接管业务。"
    assert parse_alert("", SENDER, content).kind == "unclassified"


def test_parsed_alert_is_frozen():
    with pytest.raises(FrozenInstanceError):
        parse_alert("", SENDER, "x").kind = "fault"  # type: ignore[misc]


@pytest.mark.parametrize("mac", ["000000000000", "01005E000001", "FFFFFFFFFFFF"])
def test_an_alarm_naming_a_mac_no_node_can_have_is_unclassified_not_an_error(mac):
    for content in (f"发生HA切换, MAC: {mac}已经接管业务。", f"MAC: {mac} -- WAN/LAN 2023-07-07 15:06:03连线断开故障"):
        alert = parse_alert("", SENDER, content)
        assert alert.kind == "unclassified" and alert.raw == content
