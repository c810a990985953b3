"""What two nodes must have in common to be an HA pair: R1 (model, firmware) and R9 (storage).

One implementation, used by the pairing preflight and by a node replacement (R12), so a node
that passes one passes the other.

* R1: models compare case-insensitively (UCM6304 = ucm6304: a product name); firmware exactly
  (after trimming), because the guide requires the very same build.
* R9: the exact multiset of (kind, size); sizes are rounded to 0.01 GB so that sizes that went
  through float arithmetic still compare equal, while 32.04 GB and 32.0 GB differ. GDMS cloud
  storage is a service, not a medium: it counts by presence only.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

SIZELESS_STORAGE_KINDS = frozenset({"gdms_cloud"})
STORAGE_PRECISION_DIGITS = 2  # 0.01 GB

StorageProfile = Counter[tuple[str, float | None]]


@dataclass(frozen=True)
class StorageItem:
    kind: str
    size_gb: float


def same_model(a: str, b: str) -> bool:
    return a.strip().casefold() == b.strip().casefold()


def same_firmware(a: str, b: str) -> bool:
    return a.strip() == b.strip()


def storage_profile(items: Iterable[StorageItem]) -> StorageProfile:
    profile: StorageProfile = Counter()
    for item in items:
        kind = item.kind.strip().casefold()
        if kind in SIZELESS_STORAGE_KINDS:
            profile[(kind, None)] = 1
        else:
            profile[(kind, round(float(item.size_gb), STORAGE_PRECISION_DIGITS))] += 1
    return profile


def describe_storage(profile: StorageProfile) -> str:
    parts = []
    for (kind, size), count in sorted(profile.items(), key=lambda kv: (kv[0][0], kv[0][1] or 0.0)):
        label = kind if size is None else f"{kind} {size:g} GB"
        parts.append(label if count == 1 else f"{count} x {label}")
    return ", ".join(parts)
