"""Header names and value parsers: compact forms, comma lists, params, Via, name-addr, CSeq."""

from __future__ import annotations

import pytest
from sipline.sip import (
    COMPACT_FORMS,
    CSeq,
    NameAddr,
    SipParseError,
    SipURI,
    TelURI,
    Via,
    canonical_name,
    parse_content_length,
    parse_cseq,
    parse_expires,
    parse_max_forwards,
    parse_name_addr,
    parse_name_addr_list,
    parse_params,
    parse_token_list,
    parse_via,
    quote,
    split_comma,
    text_from_wire,
    unquote,
)

# -- names --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        ("i", "call-id"), ("m", "contact"), ("e", "content-encoding"), ("l", "content-length"),
        ("c", "content-type"), ("f", "from"), ("s", "subject"), ("k", "supported"),
        ("t", "to"), ("v", "via"), ("o", "event"), ("r", "refer-to"), ("b", "referred-by"),
        ("u", "allow-events"), ("x", "session-expires"), ("y", "identity"),
        ("a", "accept-contact"), ("j", "reject-contact"), ("d", "request-disposition"),
        ("V", "via"), ("L", "content-length"), ("I", "call-id"),
        ("Via", "via"), ("VIA", "via"), ("vIa", "via"), ("Call-ID", "call-id"),
        ("CALL-id", "call-id"), ("TO ", "to"), ("v  ", "via"), ("X-Custom", "x-custom"),
        ("extensionHeader-!.%*+_`'~", "extensionheader-!.%*+_`'~"),
    ],
)
def test_canonical_name(raw: str, key: str) -> None:
    assert canonical_name(raw) == key


def test_compact_table_complete() -> None:
    assert len(COMPACT_FORMS) == 19


@pytest.mark.parametrize("raw", ["", "Foobar roobar", "C:", "a<b", "é"])
def test_canonical_name_rejects_non_tokens(raw: str) -> None:
    with pytest.raises(SipParseError):
        canonical_name(raw)


# -- comma lists, params, quoting ----------------------------------------------------------


def test_split_comma_simple_and_quoted() -> None:
    assert split_comma("a, b ,c") == ["a", "b", "c"]
    assert split_comma('"Bell, Alexander" <sip:a@b>, <sip:c@d;x="1,2">') == [
        '"Bell, Alexander" <sip:a@b>', '<sip:c@d;x="1,2">']
    assert split_comma('"a \\" , b" <sip:x>, y') == ['"a \\" , b" <sip:x>', "y"]
    assert split_comma("<sip:a@b?x=1,2>, c") == ["<sip:a@b?x=1,2>", "c"]


def test_split_comma_empty_elements() -> None:
    with pytest.raises(SipParseError):
        split_comma("a,,b")
    with pytest.raises(SipParseError):
        split_comma("a, ")
    assert split_comma("a,,b, ", allow_empty=True) == ["a", "b"]
    with pytest.raises(SipParseError, match="Unterminated quoted string"):
        split_comma('"abc, d')
    with pytest.raises(SipParseError):
        split_comma("<sip:a@b, c")


def test_parse_params() -> None:
    assert parse_params(";tag=abc;lr;Q=0.5") == {"tag": "abc", "lr": None, "q": "0.5"}
    assert parse_params(' ; tag = "a;b" ; x') == {"tag": '"a;b"', "x": None}
    assert parse_params("") == {}
    assert parse_params(";received=[2001:db8::9:255];rport") == {
        "received": "[2001:db8::9:255]", "rport": None}
    assert parse_params(";received=2001:db8::9:255") == {"received": "2001:db8::9:255"}


@pytest.mark.parametrize("text", [";;", ";a;;b", ";", "x", ";a=", ';a="unterminated', ";a b"])
def test_parse_params_errors(text: str) -> None:
    with pytest.raises(SipParseError):
        parse_params(text)


def test_quote_unquote() -> None:
    assert unquote('"J Rosenberg \\\\\\""') == 'J Rosenberg \\"'
    assert unquote("plain") == "plain"
    assert quote('a"b\\c') == '"a\\"b\\\\c"'
    assert unquote(quote('a"b\\c')) == 'a"b\\c'


def test_text_from_wire() -> None:
    wire = "Привет".encode().decode("latin-1")
    assert text_from_wire(wire) == "Привет"
    assert text_from_wire("ascii") == "ascii"
    assert text_from_wire("\xe9") == "\xe9"  # not valid UTF-8: left as it is


# -- Via ----------------------------------------------------------------------------------


def test_via_basic() -> None:
    (v,) = parse_via("SIP/2.0/UDP pc33.atlanta.com:5060;branch=z9hG4bK776asdhds;rport")
    assert v.protocol == "SIP/2.0"
    assert v.transport == "UDP"
    assert (v.host, v.port) == ("pc33.atlanta.com", 5060)
    assert v.params == {"branch": "z9hG4bK776asdhds", "rport": None}
    assert v.branch == "z9hG4bK776asdhds"
    assert v.rport == ""
    assert v.received is None
    assert str(v) == "SIP/2.0/UDP pc33.atlanta.com:5060;branch=z9hG4bK776asdhds;rport"


def test_via_params_received_rport_maddr_ttl() -> None:
    (v,) = parse_via("SIP/2.0/udp Host.Example.com;received=192.0.2.1;rport=5062;maddr=224.2.0.1;"
                     "ttl=16;branch=z9hG4bKx")
    assert v.transport == "UDP"
    assert v.host == "host.example.com"
    assert v.port is None
    assert v.received == "192.0.2.1"
    assert v.rport == "5062"
    assert v.maddr == "224.2.0.1"
    assert v.ttl == 16
    (v,) = parse_via("SIP/2.0/UDP h;ttl=300")
    with pytest.raises(SipParseError):
        _ = v.ttl


def test_via_lws_everywhere() -> None:
    vias = parse_via("SIP  / 2.0  / TCP     spindle.example.com   ;  branch  =   z9hG4bK9ikj8  ,"
                     " SIP  /    2.0   / UDP  192.168.255.111   ; branch= z9hG4bK30239")
    assert [(v.transport, v.host, v.branch) for v in vias] == [
        ("TCP", "spindle.example.com", "z9hG4bK9ikj8"),
        ("UDP", "192.168.255.111", "z9hG4bK30239"),
    ]
    (v,) = parse_via("SIP/2.0/UDP host : 5070 ;branch=x")
    assert v.port == 5070


def test_via_ipv6() -> None:
    (v,) = parse_via("SIP/2.0/UDP [2001:db8::9:1]:6050;received=[2001:db8::9:255];branch=z9hG4bKa")
    assert (v.host, v.port, v.received) == ("[2001:db8::9:1]", 6050, "[2001:db8::9:255]")
    (v,) = parse_via("SIP/2.0/UDP [2001:db8::9:1];received=2001:db8::9:255;branch=z9hG4bKas3")
    assert v.received == "2001:db8::9:255"
    (v,) = parse_via("SIP/2.0/UDP [::ffff:192.0.2.10]:19823;branch=z9hG4bKbh19")
    assert v.host == "[::ffff:192.0.2.10]" and v.port == 19823


def test_via_unknown_transport_and_protocol() -> None:
    (v,) = parse_via("SIP/2.0/UNKNOWN t4.example.com;branch=z9hG4bKasd0f3en")
    assert v.transport == "UNKNOWN"
    (v,) = parse_via("SIP/7.0/UDP c.example.com;branch=z9hG4bKkdjuw")
    assert v.protocol == "SIP/7.0"


@pytest.mark.parametrize(
    "text",
    [
        "SIP/2.0/UDP 192.0.2.15;;,;,,",
        "SIP/2.0/UDP",
        "SIP/2.0 host",
        "SIP/2.0/UDP host;",
        "SIP/2.0/UDP host:99999",
        "SIP/2.0/UDP host:abc",
        "SIP/2.0/UDP [2001:db8::1",
        "SIP/2.0/UDP host,",
        "",
        "garbage",
        "SIP/2.0/UDP host;branch=a b",
    ],
)
def test_via_errors(text: str) -> None:
    with pytest.raises(SipParseError):
        parse_via(text)


def test_via_badbranch_is_syntax_valid() -> None:
    (v,) = parse_via("SIP/2.0/UDP host.example.com;branch=z9hG4bK")
    assert v.branch == "z9hG4bK"


def test_via_construct_and_mutate() -> None:
    v = Via("udp", "Proxy.Example.COM", 5060, {"branch": "z9hG4bK1"})
    assert str(v) == "SIP/2.0/UDP proxy.example.com:5060;branch=z9hG4bK1"
    w = v.copy()
    w.params["received"] = "10.0.0.1"
    assert "received" not in v.params
    assert str(w).endswith(";branch=z9hG4bK1;received=10.0.0.1")


# -- name-addr ----------------------------------------------------------------------------


def test_name_addr_forms() -> None:
    a = parse_name_addr('"Alice Liddell" <sip:alice@wonderland.com>;tag=12345')
    assert a.display == "Alice Liddell"
    assert isinstance(a.uri, SipURI) and a.uri.user == "alice"
    assert a.tag == "12345"
    a = parse_name_addr("Bob <sip:bob@biloxi.com>")
    assert a.display == "Bob" and a.tag is None
    a = parse_name_addr("<sip:bob@biloxi.com>")
    assert a.display is None
    a = parse_name_addr("caller<sip:caller@example.com>;tag=323")  # no LWS before <
    assert a.display == "caller" and a.tag == "323"
    a = parse_name_addr("token1~` token2'+_ token3*%!.- <sip:mundane@example.com>")
    assert a.display == "token1~` token2'+_ token3*%!.-"


def test_addr_spec_params_belong_to_header() -> None:
    # RFC 3261 §20.10: without <>, parameters after the URI are header parameters.
    a = parse_name_addr("sip:+12125551212@phone2net.com;tag=887s;user=phone")
    assert isinstance(a.uri, SipURI)
    assert a.uri.params == {}
    assert a.params == {"tag": "887s", "user": "phone"}
    a = parse_name_addr("<sip:+12125551212@phone2net.com;user=phone>;tag=887s")
    assert isinstance(a.uri, SipURI)
    assert a.uri.params == {"user": "phone"}
    assert a.params == {"tag": "887s"}


def test_quoted_pairs_and_control_bytes_in_display() -> None:
    a = parse_name_addr('"J Rosenberg \\\\\\"" <sip:jdrosen@example.com>;tag=98asjd8')
    assert a.display == 'J Rosenberg \\"'
    a = parse_name_addr('"BEL:\\\x07 NUL:\\\x00 DEL:\\\x7f" <sip:x@example.com>')
    assert a.display == "BEL:\x07 NUL:\x00 DEL:\x7f"
    a = parse_name_addr('"%Z%45" <sip:resource@example.com>')
    assert a.display == "%Z%45"  # no unescaping in display names


def test_name_addr_lws() -> None:
    a = parse_name_addr('"Quoted string \\"\\"" <sip:jdrosen@example.com> ; newparam = newvalue ;'
                        " secondparam ; q = 0.33")
    assert a.display == 'Quoted string ""'
    assert a.params == {"newparam": "newvalue", "secondparam": None, "q": "0.33"}
    assert a.q == 0.33
    a = parse_name_addr("sip:vivekg@chair-dnrc.example.com ;   tag    = 1918181833n")
    assert a.tag == "1918181833n"


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ('"Mr. J. User <sip:j.user@example.com>', "Unterminated quoted string in To"),
        ("Watson, Thomas <sip:t.watson@example.org>", "comma"),
        ('"Watson, Thomas" < sip:t.watson@example.org >', "Whitespace inside <>"),
        ("<sip:a@b>, <sip:c@d>", "Multiple values"),
        ("<sip:a@b", "Unterminated <>"),
        ("sip:a@b?x=y", "enclosed in <>"),
        ("<sip:a@b>;;", "Empty parameter"),
        ("<sip:a@b>;tag", None),
        ("", "Empty"),
        ("<>", None),
        ('"abc" sip:a@b', None),
        ("<sip:a b@c>", None),
    ],
)
def test_name_addr_errors(text: str, reason: str | None) -> None:
    if reason is None and text == "<sip:a@b>;tag":
        assert parse_name_addr(text).params == {"tag": None}
        return
    with pytest.raises(SipParseError) as ei:
        parse_name_addr(text, what="To")
    if reason:
        assert reason in ei.value.reason


def test_name_addr_list() -> None:
    lst = parse_name_addr_list('"Bell, A." <sip:a@b>;q=0.7, <sip:c@d>;expires=60, sip:e@f')
    assert [a.display for a in lst] == ["Bell, A.", None, None]
    assert [a.q for a in lst] == [0.7, None, None]
    assert lst[1].expires == 60
    with pytest.raises(SipParseError):
        parse_name_addr_list('"Joe" <sip:joe@example.org>;;;;')


def test_name_addr_other_schemes() -> None:
    a = parse_name_addr("<tel:+1-201-555-0123>")
    assert isinstance(a.uri, TelURI)
    a = parse_name_addr("isbn:2983792873")
    assert a.uri.scheme == "isbn"


def test_name_addr_str_and_copy() -> None:
    a = parse_name_addr("Bob <sip:bob@biloxi.com>;tag=a6c85cf")
    assert str(a) == '"Bob" <sip:bob@biloxi.com>;tag=a6c85cf'
    b = a.copy()
    b.tag = "other"
    assert a.tag == "a6c85cf" and b.tag == "other"
    c = NameAddr("sip:x@y", display="X", params={"Tag": "1"})
    assert str(c) == '"X" <sip:x@y>;tag=1'
    assert str(parse_name_addr("sip:u@h;tag=1")) == "<sip:u@h>;tag=1"


def test_q_and_expires_validation() -> None:
    a = parse_name_addr("<sip:a@b>;q=1.5;expires=280297596632815")
    with pytest.raises(SipParseError):
        _ = a.q
    with pytest.raises(SipParseError, match="out of range"):
        _ = a.expires


# -- CSeq and numbers ---------------------------------------------------------------------


def test_cseq() -> None:
    assert parse_cseq("4711 INVITE") == CSeq(4711, "INVITE")
    assert parse_cseq("  0009   INVITE ") == (9, "INVITE")
    c = parse_cseq("139122385 !interesting-Method0123456789_*+`.%indeed'~")
    assert c.method == "!interesting-Method0123456789_*+`.%indeed'~"
    assert str(parse_cseq("1 ACK")) == "1 ACK"
    assert parse_cseq("2147483647 BYE").seq == 2**31 - 1


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("2147483648 INVITE", "Bad CSeq: number out of range"),
        ("36893488147419103232 REGISTER", "Bad CSeq: number out of range"),
        ("9" * 5000 + " INVITE", "Bad CSeq: number out of range"),
        ("abc INVITE", "Bad CSeq"),
        ("1", "Bad CSeq"),
        ("1 IN VITE", "Bad CSeq"),
        ("", "Empty CSeq"),
        ("-1 INVITE", "Bad CSeq"),
        ("\u0661 INVITE", "Bad CSeq"),
    ],
)
def test_cseq_errors(text: str, reason: str) -> None:
    with pytest.raises(SipParseError) as ei:
        parse_cseq(text)
    assert reason in ei.value.reason


def test_bounded_ints() -> None:
    assert parse_max_forwards("0068") == 68
    assert parse_max_forwards("255") == 255
    with pytest.raises(SipParseError, match="Max-Forwards"):
        parse_max_forwards("300")
    assert parse_content_length(" 0 ") == 0
    for bad in ("-999", "five", "1e3", "", "²"):
        with pytest.raises(SipParseError, match="Content-Length"):
            parse_content_length(bad)
    assert parse_expires("4294967295") == 2**32 - 1
    with pytest.raises(SipParseError, match="out of range"):
        parse_expires("1" + "0" * 100)
    with pytest.raises(SipParseError):
        parse_expires("9" * 100_000)  # no unbounded big-int conversion


def test_token_list() -> None:
    assert parse_token_list("100rel, Timer ,replaces") == ["100rel", "timer", "replaces"]
    assert parse_token_list("INVITE, ACK", lower=False) == ["INVITE", "ACK"]
    with pytest.raises(SipParseError):
        parse_token_list("a b, c")


def test_text_to_wire_round_trip() -> None:
    from sipline.sip import text_to_wire

    assert text_to_wire("ascii") == "ascii"
    assert text_from_wire(text_to_wire("Décliné ✓")) == "Décliné ✓"
    assert text_to_wire("é").encode("latin-1") == "é".encode()
