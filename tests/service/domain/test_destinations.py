"""URL and address rules against SSRF (no DNS: the addresses are given), with the host normalized as
the service does it (service/event_urls.py: IDNA / UTS 46)."""
from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.domain.destinations import UnsafeDestination, address_class, refuse_address, vet_addresses
from service.event_urls import parse_event_url as parse_destination


def test_a_public_https_url_is_kept_as_given():
    d = parse_destination("https://Hooks.Example.com:8443/in?x=1", allow_loopback=False)
    assert (d.scheme, d.host, d.port, d.target, d.host_header) == ("https", "hooks.example.com", 8443, "/in?x=1",
                                                                   "hooks.example.com:8443")


@pytest.mark.parametrize("url", ["http://127.0.0.1:8090/receiver/x", "http://localhost:9000/", "https://[::1]/"])
def test_the_development_setting_admits_http_and_loopback_only(url):
    parse_destination(url, allow_loopback=True)


@pytest.mark.parametrize("url, host", [
    ("https://B\u00fccher.example/in", "xn--bcher-kva.example"),
    ("https://\uff41\uff42\uff43.example/", "abc.example"),
    ("https://xn--bcher-kva.example./", "xn--bcher-kva.example"),
    ("https://r3---sn-abc.googlevideo.com/", "r3---sn-abc.googlevideo.com"),  # valid in DNS, not in IDNA 2008
    ("https://[2606:2800:0220:0001::1]/", "2606:2800:220:1::1"),
])
def test_the_host_is_judged_and_sent_in_its_ascii_form(url, host):
    assert parse_destination(url, allow_loopback=False).host == host


@pytest.mark.parametrize("url, code", [
    ("https://\uff11\uff12\uff17.\uff10.\uff10.\uff11/", "address_loopback"),
    ("https://\u0661\u0662\u0667.0.0.1/", "url_host"),  # Arabic-Indic digits have no ASCII form
    ("https://a" + "b" * 63 + ".example/", "url_host"),
    ("https://" + "a." * 127 + "com/", "url_host"),  # 257 characters
    ("https://exa%20mple.com/", "url_host"),
    ("https://[::1%25eth0]/", "url_host"),
    ("https://hooks.example.com:0/", "url_port"),
    ("https://hooks.example.com:99999/", "url_invalid"),
    ("https://./", "url_invalid"),
])
def test_hosts_and_ports_that_are_not_valid_are_refused(url, code):
    with pytest.raises(UnsafeDestination) as exc:
        parse_destination(url, allow_loopback=False)
    assert exc.value.code == code


@pytest.mark.parametrize("url", ["http://10.0.0.1/", "https://169.254.169.254/", "https://192.168.1.1/",
                                 "http://metadata.google.internal/", "http://nas.local/", "http://intranet/",
                                 "http://metadata/"])
def test_the_development_setting_still_refuses_private_and_metadata(url):
    with pytest.raises(UnsafeDestination):
        parse_destination(url, allow_loopback=True)


def test_one_bad_answer_refuses_the_name():
    with pytest.raises(UnsafeDestination) as exc:
        vet_addresses("x.example.com", ["93.184.216.34", "10.0.0.1"], allow_loopback=False)
    assert exc.value.code == "address_private"
    with pytest.raises(UnsafeDestination):
        vet_addresses("x.example.com", [], allow_loopback=False)
    assert [str(a) for a in vet_addresses("x.example.com", ["93.184.216.34", "2606:2800:220:1::1"],
                                          allow_loopback=False)] == ["93.184.216.34", "2606:2800:220:1::1"]


@settings(max_examples=400, deadline=None)
@given(st.one_of(st.ip_addresses(v=4), st.ip_addresses(v=6)))
def test_only_global_unicast_addresses_pass(address):
    """Reference: Python's `is_global` (less multicast and reserved), on the IPv4 address an IPv6 form embeds."""
    judged = address
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is None and address in ipaddress.ip_network("64:ff9b::/96"):
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        judged = embedded or address
    public = judged.is_global and not judged.is_multicast and not judged.is_reserved
    assert (address_class(address) is None) == public
    if public:
        refuse_address(address, allow_loopback=False)
    else:
        with pytest.raises(UnsafeDestination):
            refuse_address(address, allow_loopback=address_class(address) != "loopback")
