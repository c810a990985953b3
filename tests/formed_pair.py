"""The pair most API and worker tests start from: two devices with plans, paired through the API.

Built through the admin API (the way an admin forms a pair), every step asserted, so a test that
starts from it fails at the step that broke rather than later with a confusing error.
"""
from __future__ import annotations

from typing import Any

PRIMARY, SECONDARY = "00:0B:82:A4:6E:BF", "C0:74:AD:45:3B:10"


def post_device(client: Any, headers: dict[str, str], mac: str, **fields: Any) -> dict[str, Any]:
    """A UCM6304 on firmware 1.0.15.8 (``fields`` override); returns the created device."""
    body = {"mac": mac, "model": "UCM6304", "firmware": "1.0.15.8", **fields}
    r = client.post("/api/v1/devices", json=body, headers=headers)
    assert r.status_code == 201, r.get_json()
    return r.get_json()


def post_plan(client: Any, headers: dict[str, str], device_mac: str | None, **fields: Any) -> dict[str, Any]:
    """An active Pro plan that counts for HA and Cloud IM (``fields`` override); returns the created plan."""
    body = {"tier": "Pro", "ha": True, "cloud_im": True, "status": "active", "device_mac": device_mac, **fields}
    r = client.post("/api/v1/plans", json=body, headers=headers)
    assert r.status_code == 201, r.get_json()
    return r.get_json()


def form_pair(client: Any, tenant: Any, primary: str = PRIMARY, secondary: str = SECONDARY,
              **options: Any) -> dict[str, Any]:
    """`build_pair` with the tenant's admin token."""
    return build_pair(client, tenant.admin(), primary, secondary, **options)


def build_pair(client: Any, h: dict[str, str], primary: str = PRIMARY, secondary: str = SECONDARY, *,
               domain: str | None = "pbx.example.com", cloud_im: str | None = None,
               plan_cloud_im: bool = True, primary_cloud_im: bool = False) -> dict[str, Any]:
    """Devices, plans (Pro, HA), the pair, then its custom domain and Cloud IM when asked.

    Returns the pair's id, each node's webhook secret and alert token by MAC, and the admin headers.
    ``primary_cloud_im`` marks the Primary's device as having Cloud IM enabled on the UCM.
    """
    secrets, tokens = {}, {}
    for k, mac in enumerate((primary, secondary)):
        device = post_device(client, h, mac, **({"cloud_im_enabled": True} if primary_cloud_im and k == 0 else {}))
        secrets[mac], tokens[mac] = device["webhook_secret"], device["alert_token"]
        post_plan(client, h, mac, cloud_im=plan_cloud_im)
    r = client.post("/api/v1/ha-pairs", json={"primary_mac": primary, "secondary_mac": secondary}, headers=h)
    assert r.status_code == 201, r.get_json()
    pair_id = r.get_json()["id"]
    if domain is not None:
        r = client.put(f"/api/v1/ha-pairs/{pair_id}/custom-domain", json={"domain": domain}, headers=h)
        assert r.status_code == 200, r.get_json()
    if cloud_im is not None:
        r = client.put(f"/api/v1/ha-pairs/{pair_id}/cloud-im", json={"enabled": True, "server": cloud_im}, headers=h)
        assert r.status_code == 200, r.get_json()
    return {"id": pair_id, "secrets": secrets, "tokens": tokens, "headers": h}
