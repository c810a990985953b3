"""Prerequisites of an HA pair that the cloud can check before the pair is formed.

``preflight`` answers with every check, passed or not, always in the same order
(:data:`CHECK_ORDER`), so a client can render a checklist and diff two runs. Decisions
where the guide leaves room:

* A check that does not apply passes with a detail starting ``not applicable:`` (R2 without
  UCMRC, the Cloud IM permission without the GDMS server, R8 without HA settings or without
  one site's network). It is never left out, so the list keeps its shape.
* A check that needs a device that was not found fails with a detail starting
  ``cannot check:`` and the violation code ``primary_not_found`` / ``secondary_not_found``:
  a pair cannot be formed from a device we do not know, so failing is the honest answer.
* A check's ``code`` names what is checked (``plan_spec_match``); the violations of a failed
  check name what is wrong (``plan_spec_mismatch``), as the API's ``violations`` list does.
  One failed check can carry several violations (a plan both without HA and expired).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from ipaddress import IPv4Interface

from .errors import Violation
from .mac import normalize_mac
from .network import host_interface, parse_host, parse_netmask
from .node_rules import StorageItem, describe_storage, same_firmware, same_model, storage_profile
from .plans import (
    PlanFacts,
    cloud_im_gdms_rule,
    node_plan_ha_violations,
    plan_spec_violations,
)

HEARTBEAT_PORT_RANGE = (0, 65535)
HEARTBEAT_TIMEOUT_RANGE_S = (7, 45)
# Cloud storage is a service the node may use, not a medium with a size worth comparing.

CHECK_ORDER: tuple[tuple[str, str], ...] = (
    ("membership", "primary_exists"),
    ("membership", "secondary_exists"),
    ("membership", "distinct_devices"),
    ("membership", "primary_not_in_pair"),
    ("membership", "secondary_not_in_pair"),
    ("R1", "same_model"),
    ("R1", "same_firmware"),
    ("R2", "primary_plan_ha"),
    ("R2", "secondary_plan_ha"),
    ("R2", "plan_spec_match"),
    ("R3", "single_cloud_im"),
    ("R3", "cloud_im_plan_permission"),
    ("R8", "heartbeat_port_range"),
    ("R8", "heartbeat_timeout_range"),
    ("R8", "primary_addresses_valid"),
    ("R8", "secondary_addresses_valid"),
    ("R8", "primary_heartbeat_subnet_differs"),
    ("R8", "secondary_heartbeat_subnet_differs"),
    ("R8", "primary_heartbeat_gateway_in_subnet"),
    ("R8", "secondary_heartbeat_gateway_in_subnet"),
    ("R9", "storage_match"),
)

SITES = ("primary", "secondary")


@dataclass(frozen=True)
class NodeFacts:
    """What the service knows about one device of the caller's organization."""

    mac: str
    model: str
    firmware: str
    cloud_im_enabled: bool
    storage: tuple[StorageItem, ...]
    plan: PlanFacts | None
    in_pair: bool


@dataclass(frozen=True)
class SiteNetwork:
    """One site's HA network settings: heartbeat port and business port addresses."""

    heartbeat_ip: str
    heartbeat_gateway: str
    heartbeat_netmask: str
    business_ip: str
    business_netmask: str


@dataclass(frozen=True)
class HaSettings:
    heartbeat_port: int = 9527
    heartbeat_timeout_s: int = 7
    primary: SiteNetwork | None = None
    secondary: SiteNetwork | None = None


@dataclass(frozen=True)
class PairRequest:
    primary_mac: str
    secondary_mac: str
    use_ucmrc: bool
    ha_settings: HaSettings | None
    cloud_im_server: str | None = None


@dataclass(frozen=True)
class Check:
    """One prerequisite and its outcome; ``violations`` is empty exactly when ``ok``."""

    rule: str
    code: str
    ok: bool
    detail: str
    violations: tuple[Violation, ...] = ()

    def as_dict(self) -> dict[str, object]:
        return {"rule": self.rule, "code": self.code, "ok": self.ok, "detail": self.detail}


def _passed(rule: str, code: str, detail: str) -> Check:
    return Check(rule, code, True, detail)


def _failed(rule: str, code: str, violations: Iterable[Violation]) -> Check:
    found = tuple(violations)
    return Check(rule, code, False, "; ".join(v.detail for v in found), found)


def _fail(rule: str, code: str, violation_code: str, detail: str) -> Check:
    """A check failed for exactly one reason."""
    return _failed(rule, code, [Violation(rule, violation_code, detail)])


def _outcome(rule: str, code: str, violations: Sequence[Violation], ok_detail: str) -> Check:
    return _failed(rule, code, violations) if violations else _passed(rule, code, ok_detail)


def _not_found(rule: str, code: str, missing: Sequence[str]) -> Check:
    return _failed(
        rule,
        code,
        [Violation(rule, f"{site}_not_found", f"cannot check: {site} device not found") for site in missing],
    )


def _missing(primary: NodeFacts | None, secondary: NodeFacts | None) -> list[str]:
    return [site for site, node in zip(SITES, (primary, secondary), strict=True) if node is None]


def failed(checks: Iterable[Check]) -> list[Violation]:
    """The violations of the failed checks, in check order (the body of a 422)."""
    return [violation for check in checks if not check.ok for violation in check.violations]


def preflight(
    request: PairRequest,
    primary: NodeFacts | None,
    secondary: NodeFacts | None,
    now: datetime,
) -> list[Check]:
    """Every prerequisite of domain.md the cloud can check, in :data:`CHECK_ORDER`.

    ``primary`` / ``secondary`` are ``None`` when the MAC is not a device of the caller's
    organization. A malformed MAC in ``request`` raises ``InvalidMac``: that is a bad
    request, not a failed prerequisite.
    """
    return [
        *_membership_checks(request, primary, secondary),
        *_r1_checks(primary, secondary),
        *_r2_checks(request, primary, secondary, now),
        *_r3_checks(request, primary, secondary, now),
        *_r8_checks(request.ha_settings),
        _r9_check(primary, secondary),
    ]


def _membership_checks(
    request: PairRequest, primary: NodeFacts | None, secondary: NodeFacts | None
) -> list[Check]:
    macs = (normalize_mac(request.primary_mac), normalize_mac(request.secondary_mac))
    nodes = (primary, secondary)
    checks = [
        _passed("membership", f"{site}_exists", f"{site} device {mac} found")
        if node is not None
        else _fail("membership", f"{site}_exists", f"{site}_not_found", f"{site} device {mac} not found")
        for site, node, mac in zip(SITES, nodes, macs, strict=True)
    ]
    if macs[0] == macs[1]:
        checks.append(
            _fail(
                "membership", "distinct_devices", "same_device", "primary and secondary are the same device"
            )
        )
    else:
        checks.append(
            _passed("membership", "distinct_devices", "primary and secondary are different devices")
        )
    for site, node, mac in zip(SITES, nodes, macs, strict=True):
        code = f"{site}_not_in_pair"
        if node is None:
            checks.append(_not_found("membership", code, [site]))
        elif node.in_pair:
            checks.append(
                _fail("membership", code, f"{site}_in_pair", f"{site} device {mac} is already in an HA pair")
            )
        else:
            checks.append(_passed("membership", code, f"{site} device {mac} is in no other pair"))
    return checks


def _r1_checks(primary: NodeFacts | None, secondary: NodeFacts | None) -> list[Check]:
    missing = _missing(primary, secondary)
    if primary is None or secondary is None:
        return [_not_found("R1", "same_model", missing), _not_found("R1", "same_firmware", missing)]
    # Model names are product names (UCM6304 = ucm6304); firmware versions are compared
    # exactly because the guide requires the very same build.
    if same_model(primary.model, secondary.model):
        model = _passed("R1", "same_model", f"both nodes are {primary.model}")
    else:
        model = _fail(
            "R1",
            "same_model",
            "model_mismatch",
            f"models differ: primary {primary.model}, secondary {secondary.model}",
        )
    if same_firmware(primary.firmware, secondary.firmware):
        firmware = _passed("R1", "same_firmware", f"both nodes run firmware {primary.firmware}")
    else:
        firmware = _fail(
            "R1",
            "same_firmware",
            "firmware_mismatch",
            f"firmware differs: primary {primary.firmware}, secondary {secondary.firmware}",
        )
    return [model, firmware]


def _r2_checks(
    request: PairRequest, primary: NodeFacts | None, secondary: NodeFacts | None, now: datetime
) -> list[Check]:
    if not request.use_ucmrc:
        return [
            _passed("R2", code, "not applicable: the pair does not use UCMRC")
            for code in ("primary_plan_ha", "secondary_plan_ha", "plan_spec_match")
        ]
    checks = [
        _not_found("R2", f"{site}_plan_ha", [site])
        if node is None
        else _outcome(
            "R2",
            f"{site}_plan_ha",
            node_plan_ha_violations(site, node.plan, now),
            f"the {site} node's plan counts for HA",
        )
        for site, node in zip(SITES, (primary, secondary), strict=True)
    ]
    if primary is None or secondary is None:
        checks.append(_not_found("R2", "plan_spec_match", _missing(primary, secondary)))
    elif primary.plan is None or secondary.plan is None:
        checks.append(
            _failed(
                "R2",
                "plan_spec_match",
                [
                    Violation(
                        "R2", f"{site}_plan_missing", f"cannot check: the {site} node has no UCMRC plan"
                    )
                    for site, node in zip(SITES, (primary, secondary), strict=True)
                    if node.plan is None
                ],
            )
        )
    else:
        checks.append(
            _outcome(
                "R2",
                "plan_spec_match",
                plan_spec_violations(primary.plan, secondary.plan),
                f"both plans are {primary.plan.tier}",
            )
        )
    return checks


def _r3_checks(
    request: PairRequest, primary: NodeFacts | None, secondary: NodeFacts | None, now: datetime
) -> list[Check]:
    missing = _missing(primary, secondary)
    if primary is None or secondary is None:
        single = _not_found("R3", "single_cloud_im", missing)
    # Guide, basic setup step 3: Cloud IM on A (the Primary), B's off. B is the node whose
    # data the Primary's full backup overwrites, so a Cloud IM of its own would be a second,
    # orphaned service -- even when the Primary has none.
    elif secondary.cloud_im_enabled and primary.cloud_im_enabled:
        single = _fail(
            "R3",
            "single_cloud_im",
            "cloud_im_on_both",
            "Cloud IM is enabled on both nodes; turn it off on the secondary",
        )
    elif secondary.cloud_im_enabled:
        single = _fail(
            "R3",
            "single_cloud_im",
            "cloud_im_on_secondary",
            "Cloud IM is enabled on the secondary; enable it on the primary and turn it off on the secondary",
        )
    else:
        on = "on the primary only" if primary.cloud_im_enabled else "on neither node"
        single = _passed("R3", "single_cloud_im", f"Cloud IM is enabled {on}")

    # The guide ties the permission to the GDMS-delivered server, whether or not the pair
    # uses UCMRC for remote connections, so ``use_ucmrc`` is not consulted here.
    if request.cloud_im_server != "gdms":
        permission = _passed(
            "R3", "cloud_im_plan_permission", "not applicable: Cloud IM does not use the GDMS server"
        )
    elif primary is None or secondary is None:
        permission = _not_found("R3", "cloud_im_plan_permission", missing)
    else:
        permission = _outcome(
            "R3",
            "cloud_im_plan_permission",
            cloud_im_gdms_rule(primary.plan, secondary.plan, now),
            "both nodes' plans carry the Cloud IM permission",
        )
    return [single, permission]


def _in_range(value: object, bounds: tuple[int, int]) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and bounds[0] <= value <= bounds[1]


def _range_check(code: str, what: str, unit: str, value: object, bounds: tuple[int, int]) -> Check:
    if _in_range(value, bounds):
        return _passed("R8", code, f"{what} {value}{unit}")
    return _fail(
        "R8",
        code,
        f"{code.removesuffix('_range')}_out_of_range",
        f"{what} {value!r}{unit} is outside {bounds[0]}-{bounds[1]}{unit}",
    )


def _site_addresses(site: SiteNetwork) -> tuple[dict[str, IPv4Interface], list[str]]:
    """The parsed heartbeat/business interfaces and gateway, and what is wrong with them."""
    parsed: dict[str, IPv4Interface] = {}
    problems: list[str] = []
    for name, ip_text, mask_text in (
        ("heartbeat", site.heartbeat_ip, site.heartbeat_netmask),
        ("business", site.business_ip, site.business_netmask),
    ):
        try:
            parse_netmask(mask_text)
        except ValueError as exc:
            # Without a mask there is no subnet, but the address alone can still be judged.
            problems.append(f"{name}_netmask {exc}")
            try:
                parse_host(ip_text)
            except ValueError as ip_exc:
                problems.append(f"{name}_ip {ip_exc}")
            continue
        try:
            parsed[name] = host_interface(ip_text, mask_text)
        except ValueError as exc:
            problems.append(f"{name}_ip {exc}")
    try:
        parsed["gateway"] = IPv4Interface(f"{parse_host(site.heartbeat_gateway)}/32")
    except ValueError as exc:
        problems.append(f"heartbeat_gateway {exc}")
    return parsed, problems


def _site_checks(name: str, site: SiteNetwork | None) -> tuple[Check, Check, Check]:
    """The addresses, subnet and gateway checks of one site."""
    codes = (
        f"{name}_addresses_valid",
        f"{name}_heartbeat_subnet_differs",
        f"{name}_heartbeat_gateway_in_subnet",
    )
    if site is None:
        not_given = f"not applicable: no {name} network settings given"
        return (
            _passed("R8", codes[0], not_given),
            _passed("R8", codes[1], not_given),
            _passed("R8", codes[2], not_given),
        )
    parsed, problems = _site_addresses(site)
    addresses = _outcome(
        "R8",
        codes[0],
        [Violation("R8", f"{name}_address_invalid", f"{name}: {problem}") for problem in problems],
        f"the {name} site's addresses and netmasks are valid",
    )
    cannot = f"cannot check: the {name} addresses are invalid"

    heartbeat, business, gateway = parsed.get("heartbeat"), parsed.get("business"), parsed.get("gateway")
    if heartbeat is None or business is None:
        subnet = _fail("R8", codes[1], f"{name}_address_invalid", cannot)
    elif heartbeat.network.overlaps(business.network):
        subnet = _fail(
            "R8",
            codes[1],
            f"{name}_heartbeat_subnet_overlaps_business",
            f"{name}: heartbeat subnet {heartbeat.network} overlaps business subnet {business.network}; "
            "they must be different subnets",
        )
    else:
        subnet = _passed(
            "R8",
            codes[1],
            f"{name}: heartbeat subnet {heartbeat.network} differs from business subnet {business.network}",
        )

    if heartbeat is None or gateway is None:
        return addresses, subnet, _fail("R8", codes[2], f"{name}_address_invalid", cannot)
    address, network = gateway.ip, heartbeat.network
    wrong = None
    if address not in network:
        wrong = f"heartbeat gateway {address} is outside the heartbeat subnet {network}"
    elif address in (network.network_address, network.broadcast_address):
        wrong = f"heartbeat gateway {address} is the network or broadcast address of {network}"
    elif address == heartbeat.ip:
        wrong = f"heartbeat gateway {address} is the heartbeat IP itself"
    if wrong:
        in_subnet = _fail("R8", codes[2], f"{name}_heartbeat_gateway_outside_subnet", f"{name}: {wrong}")
    else:
        in_subnet = _passed("R8", codes[2], f"{name}: heartbeat gateway {address} is in {network}")
    return addresses, subnet, in_subnet


def _r8_checks(settings: HaSettings | None) -> list[Check]:
    if settings is None:
        return [
            _passed(rule, code, "not applicable: no HA settings given")
            for rule, code in CHECK_ORDER
            if rule == "R8"
        ]
    primary = _site_checks("primary", settings.primary)
    secondary = _site_checks("secondary", settings.secondary)
    return [
        _range_check(
            "heartbeat_port_range", "heartbeat port", "", settings.heartbeat_port, HEARTBEAT_PORT_RANGE
        ),
        _range_check(
            "heartbeat_timeout_range",
            "heartbeat timeout",
            " s",
            settings.heartbeat_timeout_s,
            HEARTBEAT_TIMEOUT_RANGE_S,
        ),
        # Grouped by check, not by site, so the two sites' results sit side by side.
        *(check for pair in zip(primary, secondary, strict=True) for check in pair),
    ]


def _r9_check(primary: NodeFacts | None, secondary: NodeFacts | None) -> Check:
    missing = _missing(primary, secondary)
    if missing:
        return _not_found("R9", "storage_match", missing)
    assert primary is not None and secondary is not None
    ours = storage_profile(primary.storage)
    theirs = storage_profile(secondary.storage)
    if ours == theirs:
        return _passed("R9", "storage_match", f"same storage on both nodes: {describe_storage(ours) or 'none'}")
    only_primary = describe_storage(ours - theirs) or "nothing"
    only_secondary = describe_storage(theirs - ours) or "nothing"
    return _failed(
        "R9",
        "storage_match",
        [
            Violation(
                "R9",
                "storage_mismatch",
                f"storage differs: only on the primary: {only_primary}; only on the secondary: {only_secondary}",
            )
        ],
    )
