"""URIs: sip/sips/tel/absolute parsing, escaping, serialisation, comparison (RFC 3261 §19.1)."""

from __future__ import annotations

import pytest
from sipline.sip import (
    AbsoluteURI,
    SipParseError,
    SipURI,
    TelURI,
    parse_uri,
    unescape,
    uri_equal,
)


def test_basic_sip_uri() -> None:
    u = parse_uri("sip:alice@atlanta.example.com")
    assert isinstance(u, SipURI)
    assert (u.scheme, u.user, u.password, u.host, u.port) == (
        "sip", "alice", None, "atlanta.example.com", None)
    assert u.params == {}
    assert u.headers is None
    assert str(u) == "sip:alice@atlanta.example.com"


def test_user_password_port_params_headers() -> None:
    u = parse_uri("sips:alice:secretword@Atlanta.Example.COM:5061;transport=TCP;lr;maddr=10.0.0.1"
                  "?subject=project%20x&priority=urgent")
    assert isinstance(u, SipURI)
    assert u.scheme == "sips"
    assert u.user == "alice"
    assert u.password == "secretword"
    assert u.host == "atlanta.example.com"
    assert u.port == 5061
    assert u.params == {"transport": "TCP", "lr": None, "maddr": "10.0.0.1"}
    assert u.transport == "tcp"
    assert u.lr is True
    assert u.maddr == "10.0.0.1"
    assert u.headers == "subject=project%20x&priority=urgent"
    assert u.host_port() == ("atlanta.example.com", 5061)
    assert u.secure


def test_scheme_is_case_insensitive() -> None:
    u = parse_uri("SIP:bob@Biloxi.com")
    assert isinstance(u, SipURI) and u.scheme == "sip" and u.host == "biloxi.com"
    assert isinstance(parse_uri("TeL:+1-201-555-0123"), TelURI)


def test_param_names_lowercased_values_kept() -> None:
    u = parse_uri("sip:host;Transport=UDP;X-Foo=BaR")
    assert isinstance(u, SipURI)
    assert u.params == {"transport": "UDP", "x-foo": "BaR"}
    assert list(u.params) == ["transport", "x-foo"]


def test_no_user_part() -> None:
    u = parse_uri("sip:example.com:5060;lr")
    assert isinstance(u, SipURI)
    assert u.user is None and u.host == "example.com" and u.port == 5060 and u.lr


def test_ipv4_host() -> None:
    u = parse_uri("sip:10.0.0.1:5070")
    assert isinstance(u, SipURI)
    assert u.host == "10.0.0.1" and u.port == 5070


def test_ipv6_hosts() -> None:
    u = parse_uri("sip:user@[2001:DB8::1]:5060")
    assert isinstance(u, SipURI)
    assert u.host == "[2001:db8::1]" and u.port == 5060
    # RFC 5118 §4.3: the last group is inside the brackets, so there is no port.
    u = parse_uri("sip:[2001:db8::10:5070]")
    assert isinstance(u, SipURI)
    assert u.host == "[2001:db8::10:5070]" and u.port is None
    u = parse_uri("sip:[2001:db8::10]:5070")
    assert isinstance(u, SipURI)
    assert u.host == "[2001:db8::10]" and u.port == 5070
    u = parse_uri("sip:ted@[::ffff:192.0.2.2]")
    assert isinstance(u, SipURI)
    assert u.host == "[::ffff:192.0.2.2]"


def test_ipv6_three_colons_tolerated() -> None:
    # RFC 5118 §4.10: RFC 3261's ABNF allowed it; receivers tolerate it.
    u = parse_uri("sip:user@[2001:db8:::192.0.2.1]")
    assert isinstance(u, SipURI)
    assert u.host == "[2001:db8:::192.0.2.1]"


@pytest.mark.parametrize(
    "text",
    [
        "sip:2001:db8::10",  # IPv6 without brackets (RFC 5118 §4.2)
        "sip:user@[2001:db8::10",  # unterminated reference
        "sip:user@[2001:db8::zz]",
        "sip:user@host:65536",
        "sip:user@host:123456",
        "sip:user@host:abc",
        "sip:",
        "sip:user@",
        "sip:user@host;;lr",
        "sip:user@host;",
        "sip:user@host; lr",
        "sip:user name@host",
        "<sip:user@host>",
        "sip:user@host>",
        "sip:us\"er@host",
        "tel:",
        "tel:abc-xyz",
        "",
        "no-scheme-here",
        "1abc:foo",
    ],
)
def test_malformed_uris(text: str) -> None:
    with pytest.raises(SipParseError):
        parse_uri(text)


def test_port_bounds() -> None:
    u = parse_uri("sip:h:65535")
    assert isinstance(u, SipURI) and u.port == 65535
    u = parse_uri("sip:h:0")
    assert isinstance(u, SipURI) and u.port == 0
    u = parse_uri("sip:h:05060")
    assert isinstance(u, SipURI) and u.port == 5060
    with pytest.raises(SipParseError, match="port"):
        parse_uri("sip:h:99999")


def test_user_part_with_semicolon_rfc4475_semiuri() -> None:
    u = parse_uri("sip:user;par=u%40example.net@example.com")
    assert isinstance(u, SipURI)
    assert u.user == "user;par=u%40example.net"
    assert u.user_unescaped == "user;par=u@example.net"
    assert u.host == "example.com"
    assert u.params == {}


def test_unescape_once_only() -> None:
    assert unescape("n%61me=v%61lue%25%34%31") == "name=value%41"
    assert unescape("%ZZ%4") == "%ZZ%4"
    assert unescape("null-%00-null") == "null-\x00-null"
    u = parse_uri("sip:sips%3Auser%40example.com@example.net")
    assert isinstance(u, SipURI)
    assert u.user == "sips%3Auser%40example.com"
    assert u.user_unescaped == "sips:user@example.com"
    assert u.host == "example.net"


def test_weird_but_legal_user_and_password() -> None:
    # RFC 4475 intmeth Request-URI.
    text = ("sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*:&it+has=1,weird!*pas$wo~d_too."
            "(doesn't-it)@example.com")
    u = parse_uri(text)
    assert isinstance(u, SipURI)
    assert u.user == "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*"
    assert u.password == "&it+has=1,weird!*pas$wo~d_too.(doesn't-it)"
    assert u.host == "example.com"
    assert str(u) == text


def test_tel_uri() -> None:
    u = parse_uri("tel:+1-201-555-0123;Phone-Context=example.com")
    assert isinstance(u, TelURI)
    assert u.scheme == "tel"
    assert u.number == "+1-201-555-0123"
    assert u.params == {"phone-context": "example.com"}
    assert u.is_global
    assert u.digits == "+12015550123"
    assert str(u) == "tel:+1-201-555-0123;phone-context=example.com"
    local = parse_uri("tel:7042;phone-context=example.com")
    assert isinstance(local, TelURI) and not local.is_global


@pytest.mark.parametrize(
    ("text", "scheme", "opaque"),
    [
        ("nobodyKnowsThisScheme:totallyopaquecontent", "nobodyknowsthisscheme",
         "totallyopaquecontent"),
        ("soap.beep://192.0.2.103:3002", "soap.beep", "//192.0.2.103:3002"),
        ("isbn:2983792873", "isbn", "2983792873"),
        ("http://www.example.com", "http", "//www.example.com"),
        ("name:John_Smith", "name", "John_Smith"),
        ("urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6", "urn",
         "uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6"),
    ],
)
def test_absolute_uris(text: str, scheme: str, opaque: str) -> None:
    u = parse_uri(text)
    assert isinstance(u, AbsoluteURI)
    assert (u.scheme, u.opaque) == (scheme, opaque)
    assert str(u) == f"{scheme}:{opaque}"


def test_serialisation_is_canonical() -> None:
    u = parse_uri("SIP:Alice@Atlanta.COM:5060;Transport=TCP;LR")
    # Scheme, host and parameter names lowercased; user and parameter values as received.
    assert str(u) == "sip:Alice@atlanta.com:5060;transport=TCP;lr"
    u.params["maddr"] = "10.1.1.1"
    assert str(u) == "sip:Alice@atlanta.com:5060;transport=TCP;lr;maddr=10.1.1.1"
    assert str(parse_uri("sip:a@b;lr;x=Y%41")) == "sip:a@b;lr;x=Y%41"


def test_copy_and_with_params_do_not_alias() -> None:
    u = parse_uri("sip:a@b;lr")
    assert isinstance(u, SipURI)
    v = u.with_params(transport="tcp")
    assert "transport" not in u.params
    assert v.params == {"lr": None, "transport": "tcp"}
    w = v.without_params("lr")
    assert w.params == {"transport": "tcp"} and v.lr
    c = u.copy()
    c.params["x"] = "1"
    assert "x" not in u.params


def test_construct_sip_uri() -> None:
    u = SipURI("Example.COM", "bob", port=5070, params={"Transport": "udp"})
    assert str(u) == "sip:bob@example.com:5070;transport=udp"


# RFC 3261 §19.1.4 examples.
@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("sip:%61lice@atlanta.com;transport=TCP", "sip:alice@AtLanTa.CoM;Transport=tcp"),
        ("sip:carol@chicago.com", "sip:carol@chicago.com;newparam=5"),
        ("sip:carol@chicago.com", "sip:carol@chicago.com;security=on"),
        ("sip:carol@chicago.com;newparam=5", "sip:carol@chicago.com;security=on"),
        ("sip:biloxi.com;transport=tcp;method=REGISTER?to=sip:bob%40biloxi.com",
         "sip:biloxi.com;method=REGISTER;transport=tcp?to=sip:bob%40biloxi.com"),
        ("sip:alice@atlanta.com?subject=project%20x&priority=urgent",
         "sip:alice@atlanta.com?priority=urgent&subject=project%20x"),
    ],
)
def test_uri_equal(a: str, b: str) -> None:
    assert uri_equal(parse_uri(a), parse_uri(b))
    assert parse_uri(a) == parse_uri(b)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("SIP:ALICE@AtLanTa.CoM;Transport=udp", "sip:alice@AtLanTa.CoM;Transport=UDP"),
        ("sip:bob@biloxi.com", "sip:bob@biloxi.com:5060"),
        ("sip:bob@biloxi.com", "sip:bob@biloxi.com;transport=udp"),
        ("sip:bob@biloxi.com", "sip:bob@biloxi.com:6000;transport=tcp"),
        ("sip:carol@chicago.com", "sip:carol@chicago.com?Subject=next%20meeting"),
        ("sip:bob@phone21.boxesbybob.com", "sip:bob@192.0.2.4"),
        ("sip:carol@chicago.com;security=on", "sip:carol@chicago.com;security=off"),
        ("sip:a@b", "sips:a@b"),
        ("sip:a@b", "tel:+123"),
    ],
)
def test_uri_not_equal(a: str, b: str) -> None:
    assert not uri_equal(parse_uri(a), parse_uri(b))


def test_tel_and_absolute_equality() -> None:
    assert uri_equal(parse_uri("tel:+1-201-555-0123"), parse_uri("tel:+1.201.555.0123"))
    assert uri_equal(parse_uri("urn:x:%41"), parse_uri("URN:x:A"))


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("sip:%61lice@atlanta.com;transport=TCP", "sip:alice@AtLanTa.CoM;Transport=tcp"),
        ("tel:+1-201-555-0123", "tel:+1.201.555.0123"),
        ("urn:x:%41", "URN:x:A"),
    ],
)
def test_equal_uris_hash_equal(a: str, b: str) -> None:
    assert hash(parse_uri(a)) == hash(parse_uri(b))
    assert len({parse_uri(a), parse_uri(b)}) == 1
