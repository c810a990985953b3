from ipaddress import IPv4Address

import pytest

from service.domain.network import (
    host_interface,
    is_valid_host_ip,
    netmask_as_dotted,
    parse_host,
    parse_netmask,
)


def test_parse_host_takes_a_dotted_ipv4_address():
    assert parse_host("192.168.126.97") == IPv4Address("192.168.126.97")
    assert parse_host(" 172.16.3.16 ") == IPv4Address("172.16.3.16")


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "192.168.126",
        "192.168.126.256",
        "192.168.126.97/24",
        "::1",
        "fe80::1",
        "host.example",
        "192.168.001.1",
    ],
)
def test_parse_host_refuses_what_is_not_an_ipv4_address(bad):
    with pytest.raises(ValueError, match="not a valid IPv4 address"):
        parse_host(bad)


@pytest.mark.parametrize("bad", ["0.0.0.0", "127.0.0.1", "224.0.0.1", "255.255.255.255", "240.0.0.1"])
def test_parse_host_refuses_addresses_no_node_port_can_have(bad):
    with pytest.raises(ValueError, match="cannot be the address"):
        parse_host(bad)


def test_parse_host_refuses_non_strings():
    with pytest.raises(ValueError):
        parse_host(None)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "mask, prefix",
    [
        ("255.255.255.0", 24),
        ("255.255.254.0", 23),  # the guide's business LAN
        ("255.0.0.0", 8),
        ("128.0.0.0", 1),
        ("255.255.255.252", 30),
        ("24", 24),
        ("/24", 24),
        (" 16 ", 16),
    ],
)
def test_parse_netmask_takes_dotted_masks_and_prefix_lengths(mask, prefix):
    assert parse_netmask(mask) == prefix


@pytest.mark.parametrize(
    "bad",
    [
        "255.0.255.0",  # not contiguous
        "0.0.0.255",  # a host mask, which ipaddress alone would take as /24
        "255.255.255.1",
        "255.255.255",
        "abc",
        "",
        "/",
        "24.5",
        "٢٤",  # Arabic-Indic digits are decimal to str.isdecimal
    ],
)
def test_parse_netmask_refuses_what_is_not_a_mask(bad):
    with pytest.raises(ValueError):
        parse_netmask(bad)


@pytest.mark.parametrize(
    "too_wide_or_narrow", ["0", "/0", "0.0.0.0", "31", "32", "255.255.255.254", "255.255.255.255", "33", "99"]
)
def test_parse_netmask_refuses_masks_without_room_for_host_and_gateway(too_wide_or_narrow):
    with pytest.raises(ValueError):
        parse_netmask(too_wide_or_narrow)


def test_host_interface_joins_address_and_mask():
    interface = host_interface("192.168.126.97", "255.255.255.0")
    assert str(interface.network) == "192.168.126.0/24"
    assert interface.ip == IPv4Address("192.168.126.97")


@pytest.mark.parametrize("ip", ["192.168.126.0", "192.168.126.255"])
def test_host_interface_refuses_network_and_broadcast_addresses(ip):
    with pytest.raises(ValueError, match="network or broadcast"):
        host_interface(ip, "24")


def test_is_valid_host_ip():
    assert is_valid_host_ip("10.0.0.1")
    assert not is_valid_host_ip("10.0.0.256")
    assert not is_valid_host_ip("127.0.0.1")


def test_netmask_as_dotted():
    assert netmask_as_dotted("24") == "255.255.255.0"
    assert netmask_as_dotted("255.255.254.0") == "255.255.254.0"
