"""R1 and R9 have one implementation: pairing and replacement give the same answer."""
from datetime import datetime, timezone

import pytest

from service.domain.replacement import Candidate, replacement_violations
from service.domain.node_rules import StorageItem, same_firmware, same_model, storage_profile
from service.domain.preflight import NodeFacts, PairRequest, failed, preflight

NOW = datetime(2026, 11, 24, tzinfo=timezone.utc)


def _preflight_codes(a, b):
    primary = NodeFacts(mac="00:0B:82:00:00:01", model=a[0], firmware=a[1], cloud_im_enabled=False, storage=a[2],
                        plan=None, in_pair=False)
    secondary = NodeFacts(mac="00:0B:82:00:00:02", model=b[0], firmware=b[1], cloud_im_enabled=False, storage=b[2],
                          plan=None, in_pair=False)
    request = PairRequest(primary_mac=primary.mac, secondary_mac=secondary.mac, use_ucmrc=False, ha_settings=None)
    return {v.code for v in failed(preflight(request, primary, secondary, NOW)) if v.rule in ("R1", "R9")}


def _replacement_codes(a, b):
    survivor = Candidate(mac="00:0B:82:00:00:01", model=a[0], firmware=a[1], cloud_im_enabled=False, storage=a[2])
    new = Candidate(mac="00:0B:82:00:00:03", model=b[0], firmware=b[1], cloud_im_enabled=False, storage=b[2])
    found = replacement_violations(survivor, new, new.mac, use_ucmrc=False, cloud_im_gdms=False,
                                   member_macs=(survivor.mac, "00:0B:82:00:00:02"), now=NOW)
    return {v.code for v in found if v.rule in ("R1", "R9")}


SD = lambda size: (StorageItem("sd", size),)  # noqa: E731


@pytest.mark.parametrize("a, b, mismatch", [
    (("UCM6304", "1.0.15.8", SD(32.04)), ("UCM6304", "1.0.15.8", SD(32.0)), {"storage_mismatch"}),
    (("UCM6304", "1.0.15.8", SD(32.0)), ("UCM6304", "1.0.15.8", SD(32.0 + 1e-9)), set()),
    (("UCM6304", "1.0.15.8", SD(32.0) + (StorageItem("gdms_cloud", 5),)),
     ("ucm6304 ", "1.0.15.8", SD(32.0) + (StorageItem("GDMS_cloud", 100),)), set()),
    (("UCM6304", "1.0.15.8", ()), ("UCM6302", "1.0.15.9", ()), {"model_mismatch", "firmware_mismatch"}),
])
def test_pairing_and_replacement_agree(a, b, mismatch):
    assert _preflight_codes(a, b) == _replacement_codes(a, b) == mismatch


def test_the_rules_themselves():
    assert same_model("UCM6304", " ucm6304") and not same_model("UCM6304", "UCM6302")
    assert same_firmware("1.0.15.8 ", "1.0.15.8") and not same_firmware("1.0.15.8", "1.0.15.80")
    assert storage_profile(SD(32.04)) != storage_profile(SD(32.0))
    assert storage_profile(SD(16)) == storage_profile(SD(16.001))
