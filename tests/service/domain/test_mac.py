import pytest

from service.domain.errors import DomainError, InvalidInput
from service.domain.mac import InvalidMac, compact_mac, is_mac, normalize_mac

CANONICAL = "C0:74:AD:45:3B:10"


@pytest.mark.parametrize(
    "spelling",
    [
        "c074ad453b10",
        "C074AD453B10",
        "C0-74-AD-45-3B-10",
        "c0-74-ad-45-3b-10",
        "c0:74:ad:45:3b:10",
        "C0:74:AD:45:3B:10",
        "c074.ad45.3b10",
        "C074.AD45.3B10",
        "  c0:74:ad:45:3b:10\n",
        "\tc074ad453b10 ",
        "C0:74:ad:45:3B:10",
    ],
)
def test_every_common_spelling_gives_the_canonical_form(spelling):
    assert normalize_mac(spelling) == CANONICAL


def test_normalizing_is_idempotent():
    assert normalize_mac(normalize_mac("000b82a46ebf")) == "00:0B:82:A4:6E:BF"


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "   ",
        "c074ad453b1",  # 11 digits
        "c074ad453b100",  # 13 digits
        "c0:74:ad:45:3b",  # five groups
        "c0:74:ad:45:3b:10:11",  # seven groups
        "g074ad453b10",  # not hex
        "c0:74:ad:45:3b:1z",
        "c0:74-ad:45:3b:10",  # mixed separators
        "c0-74-ad-45-3b:10",
        "c0:74:ad:45:3b:1",  # short group
        "c:74:ad:45:3b:10a",
        "c0.74.ad.45.3b.10",  # dots between pairs are not the Cisco spelling
        "c074ad.453b10",
        "c0 74 ad 45 3b 10",  # space separated
        "c0::74:ad:45:3b:10",
        "c0:74:ad:45:3b:10:",
        "0xc074ad453b10",
        "ｃ074ad453b10",  # full-width letter
        "c074ad453b10\x00",
    ],
)
def test_malformed_spellings_are_refused(bad):
    with pytest.raises(InvalidMac):
        normalize_mac(bad)


@pytest.mark.parametrize("bad", [None, 0xC074AD453B10, b"c074ad453b10", ["c074ad453b10"]])
def test_non_strings_are_refused_not_crashed_on(bad):
    with pytest.raises(InvalidMac, match="expected a string"):
        normalize_mac(bad)


def test_invalid_mac_is_a_value_error_and_a_domain_error():
    with pytest.raises(ValueError):
        normalize_mac("nope")
    with pytest.raises(DomainError) as caught:
        normalize_mac("nope")
    assert isinstance(caught.value, InvalidInput)
    assert caught.value.code == "invalid_mac"
    assert caught.value.http_status == 422


def test_the_message_names_the_value_and_the_accepted_spellings():
    with pytest.raises(InvalidMac) as caught:
        normalize_mac("c074ad45")
    message = str(caught.value)
    assert "'c074ad45'" in message
    assert "C0:74:AD:45:3B:10" in message and "c074.ad45.3b10" in message
    assert caught.value.detail == message


def test_the_message_of_a_huge_value_is_cut_short():
    with pytest.raises(InvalidMac) as caught:
        normalize_mac("x" * 100_000)
    assert len(str(caught.value)) < 300


@pytest.mark.parametrize("value, why", [
    ("000000000000", "all zeros"), ("00-00-00-00-00-00", "all zeros"),
    ("FF:FF:FF:FF:FF:FF", "broadcast"), ("ffff.ffff.ffff", "broadcast"),
    ("01:00:5e:00:00:01", "multicast"), ("33:33:00:00:00:01", "multicast"), ("03:00:00:00:00:01", "multicast"),
])
def test_addresses_no_node_can_have_are_refused(value, why):
    with pytest.raises(InvalidMac) as caught:
        normalize_mac(value)
    assert why in str(caught.value)
    assert not is_mac(value)


@pytest.mark.parametrize("value", ["02:00:00:00:00:01", "00:00:00:00:00:01", "FE:FF:FF:FF:FF:FF",
                                   "00:0B:82:A4:6E:BF"])
def test_unicast_addresses_pass_including_locally_administered(value):
    assert normalize_mac(value) == value


def test_compact_mac_gives_the_alarm_text_spelling():
    assert compact_mac("c0:74:ad:45:3b:10") == "C074AD453B10"
    assert compact_mac("C074.AD45.3B10") == "C074AD453B10"


def test_compact_mac_refuses_garbage():
    with pytest.raises(InvalidMac):
        compact_mac("C074AD45")


def test_is_mac_never_raises():
    assert is_mac("c0-74-ad-45-3b-10")
    assert not is_mac("c0-74")
    assert not is_mac(None)
