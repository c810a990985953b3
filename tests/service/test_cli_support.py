"""`ucmha token list`, `ucmha pairs ...`, `ucmha demo failover`, and one-line errors from anywhere:
the console script run as a real process."""
from __future__ import annotations

import json
import re
import subprocess
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from harness.webhooks import notification, role_changed, signed_headers
from service.settings import load_settings
from tests.formed_pair import post_device
from tests.service.test_cli import UCMHA, _env, api, as_json, cli_db, ucmha, ucmha_parallel  # noqa: F401

ROOT = Path(__file__).resolve().parents[2]


def json_lines(done: subprocess.CompletedProcess[str]) -> list[dict]:
    return [json.loads(line) for line in done.stdout.splitlines() if line.strip()]


def rfc3339(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


def json_document(done: subprocess.CompletedProcess[str]) -> list[dict]:
    """`--json` is one JSON document: `json.loads` of the whole output."""
    return json.loads(done.stdout)


def _tenant(cli_db: str, name: str) -> tuple[dict, str]:
    org = as_json(ucmha(cli_db, "org", "create", name))
    return org, as_json(ucmha(cli_db, "token", "create", "--org", name, "--role", "admin", "--name", "ops"))["token"]


def test_token_list_shows_use_and_revocation_never_the_token(cli_db, api):
    org, token = _tenant(cli_db, "Token List Org")
    spare = as_json(ucmha(cli_db, "token", "create", "--org", "Token List Org", "--role", "support"))
    before = {t["id"]: t for t in json_document(ucmha(cli_db, "token", "list", "--org", "Token List Org", "--json"))}
    assert all(t["last_used_at"] is None for t in before.values())

    assert api.get("/api/v1/devices", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    assert api.application.extensions["ucmha"].token_use.flush(10)  # written off the request's path
    ucmha(cli_db, "token", "revoke", str(spare["id"]))

    listed, table = ucmha_parallel(cli_db, ("token", "list", "--org", "Token List Org", "--json"),
                                   ("token", "list"))
    rows = {t["id"]: t for t in json_document(listed)}
    assert set(rows) == set(before)
    used = next(t for t in rows.values() if t["name"] == "ops")
    assert used["org"] == "Token List Org" and used["role"] == "admin" and used["last_used_at"] is not None
    assert used["revoked_at"] is None and used["created_at"]
    assert rows[spare["id"]]["revoked_at"] is not None and rows[spare["id"]]["last_used_at"] is None
    for out in (listed.stdout, table.stdout):
        assert token not in out and spare["token"] not in out
    header = table.stdout.splitlines()[0].split()
    assert header[:4] == ["ID", "ORG", "ROLE", "NAME"] and "USED" in header and "REVOKED" in header


def _make_pair(api, token: str, macs: tuple[str, str]) -> dict:  # type: ignore[no-untyped-def]
    headers = {"Authorization": f"Bearer {token}"}
    for mac in macs:
        post_device(api, headers, mac)
    r = api.post("/api/v1/ha-pairs", json={"primary_mac": macs[0], "secondary_mac": macs[1], "use_ucmrc": False},
                 headers=headers)
    assert r.status_code == 201, r.get_json()
    return r.get_json()


def test_pairs_list_show_and_events_match_the_api(cli_db, api):
    _org, token = _tenant(cli_db, "Pairs Org")
    headers = {"Authorization": f"Bearer {token}"}
    calm = _make_pair(api, token, ("C0:74:AD:50:00:01", "C0:74:AD:50:00:02"))
    moved = _make_pair(api, token, ("C0:74:AD:50:00:03", "C0:74:AD:50:00:04"))
    # An admin ruling makes the Secondary Active: that pair needs attention, the other does not.
    assert api.post(f"/api/v1/ha-pairs/{moved['id']}/resolve", headers=headers,
                    json={"active_mac": moved["secondary_mac"], "reason": "test"}).status_code == 200

    all_pairs, attention, show, events, streamed, failovers, table = ucmha_parallel(
        cli_db,
        ("pairs", "list", "--org", "Pairs Org", "--json"),
        ("pairs", "list", "--org", "Pairs Org", "--needs-attention", "--jsonl"),
        ("pairs", "show", str(moved["id"]), "--org", "Pairs Org", "--json"),
        ("pairs", "events", str(moved["id"]), "--org", "Pairs Org", "--json"),
        ("pairs", "events", str(moved["id"]), "--org", "Pairs Org", "--jsonl"),
        ("pairs", "events", str(moved["id"]), "--org", "Pairs Org", "--kind", "failovers", "--json"),
        ("pairs", "list", "--org", "Pairs Org"))
    assert [p["id"] for p in json_document(all_pairs)] == [calm["id"], moved["id"]]
    assert [p["id"] for p in json_lines(attention)] == [moved["id"]]
    assert [p["attention"] for p in json_lines(attention)] == [["secondary_active"]]
    assert as_json(show) == api.get(f"/api/v1/ha-pairs/{moved['id']}", headers=headers).get_json()
    api_events = api.get(f"/api/v1/ha-pairs/{moved['id']}/events", headers=headers).get_json()["items"]
    assert json_document(events) == api_events and api_events
    assert json_lines(streamed) == api_events
    api_failovers = api.get(f"/api/v1/ha-pairs/{moved['id']}/events?kind=failovers", headers=headers).get_json()
    assert json_document(failovers) == api_failovers["items"] and [e["kind"] for e in api_failovers["items"]] == [
        "switch"]
    lines = table.stdout.splitlines()
    assert lines[0].split()[:3] == ["ID", "STATUS", "ACTIVE"] and len(lines) == 3
    assert moved["secondary_mac"] in lines[2] and "secondary" in lines[2] and "Secondary Active" in lines[2]
    assert "secondary_active" not in table.stdout

    human = ucmha(cli_db, "pairs", "show", str(moved["id"]), "--org", "Pairs Org").stdout
    assert f"{moved['secondary_mac']}  (Active)" in human and "epoch 2" in human


def test_support_commands_need_the_organization_when_there_are_several(cli_db):
    _tenant(cli_db, "Org One")
    _tenant(cli_db, "Org Two")
    done = ucmha(cli_db, "pairs", "list", check=False)
    assert done.returncode == 1 and "pass --org" in done.stderr and "Org One" in done.stderr


def test_errors_are_one_line_from_any_directory(cli_db, tmp_path):
    other_org, _ = _tenant(cli_db, "Elsewhere Org")
    cases = [
        (("pairs", "show", "424242", "--org", "Elsewhere Org"), {}, "No HA pair 424242"),
        (("pairs", "events", "1", "--org", "No Such Org"), {}, "No organization named 'No Such Org'"),
        (("org", "list"), {"DATABASE_URL": "postgresql+psycopg://u:hunter2@127.0.0.1:1/x"}, "Connection refused"),
        (("org", "list"), {"DATABASE_URL": f"sqlite:///{tmp_path / 'empty.db'}"}, "run `ucmha db upgrade`"),
        (("demo", "failover", "1", "--fleet", "http://127.0.0.1:9"), {}, "no node fleet at http://127.0.0.1:9"),
    ]
    for args, extra, expected in cases:
        env = _env(extra.get("DATABASE_URL", cli_db))
        done = subprocess.run([str(UCMHA), *args], env=env, cwd=tmp_path, capture_output=True, text=True,
                              timeout=60)
        assert done.returncode == 1, (args, done.stderr)
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("Error: ") and expected in lines[0], (args, done.stderr)
        assert "hunter2" not in done.stderr


def test_default_var_dir_is_the_checkout_not_the_current_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    settings = load_settings({"HOME": str(tmp_path)})
    assert settings.database_url == f"sqlite:///{ROOT / 'var' / 'ucmha.db'}"
    assert settings.broker_url == f"sqla+sqlite:///{ROOT / 'var' / 'celery-broker.db'}"
    relative = load_settings({"UCMHA_VAR_DIR": "state"})
    assert relative.database_url == f"sqlite:///{tmp_path / 'state' / 'ucmha.db'}"


def test_attention_in_words_and_repeated_events_once(cli_db, api):
    _org, token = _tenant(cli_db, "Words Org")
    headers = {"Authorization": f"Bearer {token}"}
    pair = _make_pair(api, token, ("C0:74:AD:30:00:01", "C0:74:AD:99:00:01"))
    secrets = {}
    for mac in (pair["primary_mac"], pair["secondary_mac"]):
        secrets[mac] = api.post(f"/api/v1/devices/{mac}/webhook-secret", headers=headers).get_json()["webhook_secret"]
    now = datetime.now(timezone.utc)

    def notify(mac: str, sequence: int, body: str) -> None:
        r = api.post(f"/api/v1/webhooks/ucm/{mac}", data=body, headers=signed_headers(secrets[mac], body))
        assert r.status_code == 202, r.get_json()

    notify(pair["primary_mac"], 1, notification("ha.fault", rfc3339(now), 1, source="heartbeat", state="raised"))
    for sequence in range(2, 6):  # the Active confirms itself four times
        notify(pair["primary_mac"], sequence, role_changed(rfc3339(now + timedelta(seconds=sequence)), sequence,
                                                           "force_switch"))
    listed, shown, events = ucmha_parallel(
        cli_db, ("pairs", "list", "--org", "Words Org"), ("pairs", "show", str(pair["id"]), "--org", "Words Org"),
        ("pairs", "events", str(pair["id"]), "--org", "Words Org"))
    for out in (listed.stdout, shown.stdout):
        assert "Heartbeat fault: Primary" in out and "fault_heartbeat_" not in out
    claims = [line for line in events.stdout.splitlines() if "confirmed, nothing to switch" in line]
    assert len(claims) == 1 and " x4 " in claims[0], events.stdout
    assert re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ to \d\d:\d\d:\d\dZ  Claim ", claims[0]), claims[0]
    assert "Heartbeat fault: Primary" in events.stdout and "fault_heartbeat_" not in events.stdout
    for out in (listed.stdout, shown.stdout, events.stdout):
        assert "None" not in out


def test_a_heartbeat_loss_failover_says_what_it_waits_for(cli_db, tmp_path):
    done = subprocess.run([str(UCMHA), "demo", "failover", "1", "--reason", "heart_beat_lost", "--json",
                           "--fleet", "http://127.0.0.1:9"], env=_env(cli_db), cwd=tmp_path, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 1 and done.stdout == ""  # --json keeps stdout for the answer
    waiting, error = done.stderr.strip().splitlines()
    assert "heartbeat timeout" in waiting and "Waiting for that claim" in waiting
    assert error.startswith("Error: no node fleet")
