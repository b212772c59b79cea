"""RFC 5118 IPv6 torture tests, written from the RFC's descriptions."""

from __future__ import annotations

import pytest
from sip_samples import crlf
from sipline.sip import Request, SipParseError, SipURI, parse_message

HEADERS = """\
To: sip:user@example.com
From: sip:user@example.com;tag=81x2
Via: SIP/2.0/UDP [2001:db8::9:1];branch=z9hG4bKas3-111
Call-ID: SSG9559905523997077@hlau_4100
Max-Forwards: 70
Contact: "Caller" <sip:caller@[2001:db8::1]>
CSeq: 98176 {method}
Content-Length: 0
"""


def request(start: str, method: str = "REGISTER", headers: str = HEADERS) -> Request:
    m = parse_message(crlf(start + "\n" + headers.format(method=method)))
    assert isinstance(m, Request)
    return m


def test_4_1_ipv6_good() -> None:
    m = request("REGISTER sip:[2001:db8::10] SIP/2.0")
    assert isinstance(m.uri, SipURI) and m.uri.host == "[2001:db8::10]" and m.uri.port is None
    top = m.top_via
    assert top is not None and top.host == "[2001:db8::9:1]"
    assert m.contacts[0].uri.host == "[2001:db8::1]"  # type: ignore[union-attr]


def test_4_2_ipv6_bad_no_brackets() -> None:
    with pytest.raises(SipParseError) as ei:
        request("REGISTER sip:2001:db8::10 SIP/2.0")
    assert ei.value.status == 400 and "Request-URI" in ei.value.reason
    assert ei.value.message is not None


def test_4_2_unterminated_reference() -> None:
    with pytest.raises(SipParseError):
        request("REGISTER sip:[2001:db8::10 SIP/2.0")


def test_4_3_port_ambiguous() -> None:
    m = request("REGISTER sip:[2001:db8::10:5070] SIP/2.0")
    assert isinstance(m.uri, SipURI)
    assert m.uri.host == "[2001:db8::10:5070]" and m.uri.port is None


def test_4_4_port_unambiguous() -> None:
    m = request("REGISTER sip:[2001:db8::10]:5070 SIP/2.0")
    assert isinstance(m.uri, SipURI)
    assert m.uri.host == "[2001:db8::10]" and m.uri.port == 5070


@pytest.mark.parametrize("received", ["[2001:db8::9:255]", "2001:db8::9:255"])
def test_4_5_via_received_with_and_without_brackets(received: str) -> None:
    headers = HEADERS.replace(
        "Via: SIP/2.0/UDP [2001:db8::9:1];branch=z9hG4bKas3-111",
        f"Via: SIP/2.0/UDP [2001:db8::9:1];received={received};branch=z9hG4bKas3-111")
    m = request("OPTIONS sip:[2001:db8::10] SIP/2.0", "OPTIONS", headers)
    top = m.top_via
    assert top is not None and top.received == received and top.branch == "z9hG4bKas3-111"


def test_4_6_ipv6_in_sdp_passes_through() -> None:
    sdp = (b"v=0\r\no=assistant 971731711378798081 0 IN IP6 2001:db8::20\r\n"
           b"s=Live video feed for today's meeting\r\nc=IN IP6 2001:db8::20\r\n"
           b"t=3338481189 3370017201\r\nm=audio 6000 RTP/AVP 2\r\n")
    headers = HEADERS.replace("Content-Length: 0", f"Content-Type: application/sdp\n"
                                                    f"Content-Length: {len(sdp)}")
    m = parse_message(crlf("INVITE sip:user@[2001:db8::10] SIP/2.0\n"
                           + headers.format(method="INVITE"), sdp))
    assert m.body == sdp


def test_4_7_multiple_ip_addresses_in_headers() -> None:
    m = parse_message(crlf("""
BYE sip:user@host.example.net SIP/2.0
Via: SIP/2.0/UDP [2001:db8::9:1]:6050;branch=z9hG4bKas3-111
Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKjhja8781hjuaij65144
Via: SIP/2.0/TCP [2001:db8::9:255];branch=z9hG4bK451jj;received=192.0.2.200
Call-ID: 997077@lau_4100
Max-Forwards: 70
CSeq: 89187 BYE
To: sip:user@example.net;tag=9817--94
From: sip:user@example.com;tag=81x2
Content-Length: 0
"""))
    assert [(v.transport, v.host, v.port) for v in m.via] == [
        ("UDP", "[2001:db8::9:1]", 6050),
        ("UDP", "192.0.2.1", None),
        ("TCP", "[2001:db8::9:255]", None),
    ]
    assert m.via[2].received == "192.0.2.200"


def test_4_9_ipv4_mapped_ipv6() -> None:
    m = parse_message(crlf("""
INVITE sip:user@example.com SIP/2.0
To: sip:user@example.com
From: sip:user@east.example.com;tag=81x2
Via: SIP/2.0/UDP [::ffff:192.0.2.10]:19823;branch=z9hG4bKbh19
Via: SIP/2.0/UDP [::ffff:192.0.2.2];branch=z9hG4bKas3-111
Call-ID: SSG9559905523997077@hlau_4100
Contact: "T. desk phone" <sip:ted@[::ffff:192.0.2.2]>
CSeq: 612 INVITE
Max-Forwards: 70
Content-Length: 0
"""))
    assert [v.host for v in m.via] == ["[::ffff:192.0.2.10]", "[::ffff:192.0.2.2]"]
    assert m.via[0].port == 19823
    assert m.contacts[0].uri.host == "[::ffff:192.0.2.2]"  # type: ignore[union-attr]


@pytest.mark.parametrize("host", ["[2001:db8:::192.0.2.1]", "[2001:db8::192.0.2.1]"])
def test_4_10_three_colons_tolerated_and_two_colons(host: str) -> None:
    m = parse_message(crlf(f"""
OPTIONS sip:user@{host} SIP/2.0
To: sip:user@{host}
From: sip:user@example.com;tag=810x2
Via: SIP/2.0/UDP lab1.east.example.com;branch=z9hG4bKas3-111
Call-ID: G9559905523997077@hlau_4100
CSeq: 689 OPTIONS
Max-Forwards: 70
Content-Length: 0
"""))
    assert isinstance(m, Request)
    assert m.uri.host == host  # type: ignore[union-attr]
    assert m.to.uri.host == host  # type: ignore[union-attr]
