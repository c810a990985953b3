"""Sequences as large as the contract allows (up to 2**62) are stored, not refused by the column.

A node may well number its notifications with a millisecond clock (about 2**40 today); the device's
high-water mark must hold it on PostgreSQL, where a 32-bit column would make the insert fail.
"""
from __future__ import annotations

from tests.service.api.test_webhooks import PRIMARY, SECONDARY, get_pair, pair, post  # noqa: F401
from tests.webhook_helpers import role_changed, status


def test_a_millisecond_clock_sequence_is_kept_and_still_orders_claims(client, pair):  # noqa: F811
    s = pair["secrets"][SECONDARY]
    big = 1_764_590_400_000  # 2025-12-01 in milliseconds: well above 2**31
    first = post(client, SECONDARY, s, status("2026-11-24T09:00:00Z", big, "standby"))
    assert first.status_code == 202, first.json
    assert first.json["outcome"] == "recorded"
    older = post(client, SECONDARY, s, role_changed("2026-11-24T09:30:00Z", big - 1, "force_switch"))
    assert older.status_code == 202 and older.json["outcome"] == "stale"
    newer = post(client, SECONDARY, s, role_changed("2026-11-24T09:30:00Z", big + 1, "force_switch"))
    assert newer.status_code == 202 and newer.json["outcome"] == "applied"
    assert get_pair(client, pair)["active_mac"] == SECONDARY


def test_the_largest_sequence_the_contract_allows_is_accepted(client, pair):  # noqa: F811
    r = post(client, PRIMARY, pair["secrets"][PRIMARY], status("2026-11-24T09:00:00Z", 2**62, "active"))
    assert r.status_code == 202, r.json
