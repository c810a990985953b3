"""Seed an organization with demo pairs through the public admin API, as an admin would.

Devices, a same-spec HA plan per device (R2), the pair, its custom domain (R4) and Cloud IM on
the GDMS server (R3). Idempotent: a device that already exists in the organization gets a new
webhook secret (the old one keeps working for the rotation overlap), existing plans and pairs are
reused. The result is the fleet file: the pairs' ids and the nodes' secrets.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import requests

from .fleet import FleetConfig
from .guide_log import GUIDE_PRIMARY_MAC, GUIDE_SECONDARY_MAC
from .node import NodeIdentity
from .pair import PairSpec


@dataclass(frozen=True)
class DemoPair:
    name: str
    primary_mac: str
    secondary_mac: str
    sites: tuple[str, str]
    scenario: str
    domain: str | None
    cloud_im: bool
    model: str = "UCM6304"
    firmware: str = "1.0.15.8"


DEMO_PAIRS: tuple[DemoPair, ...] = (
    DemoPair("Headquarters (the guide's pair)", GUIDE_PRIMARY_MAC, GUIDE_SECONDARY_MAC, ("Shenzhen", "Xiamen"),
             "replay", "hq.pbx.example", True),
    DemoPair("Berlin office", "C0:74:AD:10:00:01", "C0:74:AD:10:00:02", ("Berlin", "Frankfurt"), "rotate",
             "berlin.pbx.example", True, model="UCM6302"),
    DemoPair("Lyon office", "C0:74:AD:20:00:01", "C0:74:AD:20:00:02", ("Lyon", "Paris"), "split",
             "lyon.pbx.example", True, model="UCM6308"),
    DemoPair("Warehouse", "C0:74:AD:30:00:01", "C0:74:AD:30:00:02", ("Rotterdam", "Antwerp"), "quiet",
             "warehouse.pbx.example", False, model="UCM6300A"),
)


class SeedError(RuntimeError):
    """The API refused a seeding step; the message says which and why."""


class AdminClient:
    def __init__(self, api_url: str, token: str, timeout_s: float = 15.0) -> None:
        self.base = api_url.rstrip("/") + "/api/v1"
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {token}"
        self.timeout_s = timeout_s

    def call(self, method: str, path: str, ok: tuple[int, ...] = (200, 201), **kwargs: Any) -> requests.Response:
        resp = self.session.request(method, self.base + path, timeout=self.timeout_s, **kwargs)
        if resp.status_code not in ok:
            try:
                detail = resp.json().get("detail") or resp.text
            except ValueError:
                detail = resp.text
            raise SeedError(f"{method} {path}: HTTP {resp.status_code}: {str(detail)[:300]}")
        return resp


def _device(api: AdminClient, demo: DemoPair, mac: str, site: str, primary: bool) -> NodeIdentity:
    body = {"mac": mac, "model": demo.model, "firmware": demo.firmware, "name": f"{demo.name}, {'primary' if primary else 'secondary'} node",
            "site": site, "cloud_im_enabled": demo.cloud_im and primary,
            "storage": [{"kind": "sd", "size_gb": 32}]}
    resp = api.call("POST", "/devices", ok=(201, 409), json=body)
    if resp.status_code == 201:
        secret = resp.json()["webhook_secret"]
    else:  # ours already (or another organization's: then the rotation is a 404 and we stop)
        secret = api.call("POST", f"/devices/{mac}/webhook-secret").json()["webhook_secret"]
    if not api.call("GET", "/plans", params={"device_mac": mac}).json()["items"]:
        api.call("POST", "/plans", json={"tier": "Pro", "ha": True, "cloud_im": True, "status": "active",
                                         "device_mac": mac})
    return NodeIdentity(mac=mac, secret=secret, model=demo.model, firmware=demo.firmware, name=body["name"],
                        site=site)


def _pair(api: AdminClient, demo: DemoPair) -> dict[str, Any]:
    for pair in api.call("GET", "/ha-pairs", params={"q": demo.primary_mac, "limit": 50}).json()["items"]:
        if pair["status"] != "dissolved" and {pair["primary_mac"], pair["secondary_mac"]} == \
                {demo.primary_mac, demo.secondary_mac}:
            return pair
    return api.call("POST", "/ha-pairs", json={"primary_mac": demo.primary_mac, "secondary_mac": demo.secondary_mac,
                                               "use_ucmrc": True}).json()


def seed(api_url: str, token: str, org: str, demos: tuple[DemoPair, ...] = DEMO_PAIRS,
         fleet_api_url: str | None = None) -> FleetConfig:
    """Create (or find) every demo pair; returns the fleet file's content."""
    api = AdminClient(api_url, token)
    specs = []
    for demo in demos:
        primary = _device(api, demo, demo.primary_mac, demo.sites[0], primary=True)
        secondary = _device(api, demo, demo.secondary_mac, demo.sites[1], primary=False)
        pair = _pair(api, demo)
        if demo.domain and pair.get("custom_domain") != demo.domain:
            api.call("PUT", f"/ha-pairs/{pair['id']}/custom-domain", json={"domain": demo.domain})
        if demo.cloud_im and not pair["cloud_im"]["enabled"]:
            api.call("PUT", f"/ha-pairs/{pair['id']}/cloud-im", json={"enabled": True, "server": "gdms"})
        specs.append(PairSpec(pair_id=pair["id"], name=demo.name, primary=primary, secondary=secondary,
                              scenario=demo.scenario, active_mac=pair["active_mac"],
                              heartbeat_timeout_s=float((pair.get("ha_settings") or {}).get("heartbeat_timeout_s", 7))))
    return FleetConfig(api_url=fleet_api_url or api_url, org=org, pairs=tuple(specs))
