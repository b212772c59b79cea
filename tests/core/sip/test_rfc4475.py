"""RFC 4475 torture tests, written from the RFC's descriptions (messages built in this file).

§3.1.1 messages must parse with the facts the RFC calls out; §3.1.2 messages must raise
SipParseError with the expected status and a reason naming the defect; §3.2/§3.3 messages
parse (the application decides) unless the RFC says the parser layer should refuse them.
"""

from __future__ import annotations

import pytest
from sip_samples import crlf
from sipline.sip import (
    AbsoluteURI,
    Request,
    Response,
    SipParseError,
    SipURI,
    make_response,
    parse_message,
)

SDP = (b"v=0\r\no=mhandley 29739 7272939 IN IP4 192.0.2.3\r\ns=-\r\nc=IN IP4 192.0.2.4\r\n"
       b"t=0 0\r\nm=audio 49217 RTP/AVP 0 12\r\nm=video 3227 RTP/AVP 31\r\na=rtpmap:31 LPC\r\n")


def req(text: str, body: bytes = b"") -> Request:
    m = parse_message(crlf(text, body))
    assert isinstance(m, Request)
    return m


def rejected(data: bytes, status: int, reason: str) -> SipParseError:
    with pytest.raises(SipParseError) as ei:
        parse_message(data)
    assert ei.value.status == status
    assert reason in ei.value.reason, ei.value.reason
    assert ei.value.reason.isascii() and "\r" not in ei.value.reason
    return ei.value


# -- 3.1.1 valid messages -------------------------------------------------------------------


def test_3_1_1_1_wsinv_short_tortuous_invite() -> None:
    m = req(f"""
INVITE sip:vivekg@chair-dnrc.example.com;unknownparam SIP/2.0
TO :
 sip:vivekg@chair-dnrc.example.com ;   tag    = 1918181833n
from   : "J Rosenberg \\\\\\""       <sip:jdrosen@example.com>
  ;
  tag = 98asjd8
MaX-fOrWaRdS: 0068
Call-ID: wsinv.ndaksdj@192.0.2.1
Content-Length   : {len(SDP)}
cseq: 0009
  INVITE
Via  : SIP  /   2.0
 /UDP
    192.0.2.2;branch=390skdjuw
s :
NewFangledHeader:   newfangled value
 continued newfangled value
UnknownHeaderWithUnusualValue: ;;,,;;,;
Content-Type: application/sdp
Route:
 <sip:services.example.com;lr;unknownwith=value;unknown-no-value>
v:  SIP  / 2.0  / TCP     spindle.example.com   ;
  branch  =   z9hG4bK9ikj8  ,
 SIP  /    2.0   / UDP  192.168.255.111   ; branch=
 z9hG4bK30239
m:"Quoted string \\"\\"" <sip:jdrosen@example.com> ; newparam =
      newvalue ;
  secondparam ; q = 0.33
""", SDP)
    assert m.uri.params == {"unknownparam": None}  # type: ignore[union-attr]
    assert [(v.transport, v.host, v.branch) for v in m.via] == [
        ("UDP", "192.0.2.2", "390skdjuw"),
        ("TCP", "spindle.example.com", "z9hG4bK9ikj8"),
        ("UDP", "192.168.255.111", "z9hG4bK30239"),
    ]
    assert m.max_forwards == 68
    assert m.cseq == (9, "INVITE")
    assert m.get("Subject") == ""
    assert m.to.tag == "1918181833n"
    assert m.from_.display == 'J Rosenberg \\"' and m.from_.tag == "98asjd8"
    assert m.get("UnknownHeaderWithUnusualValue") == ";;,,;;,;"
    assert m.get("NewFangledHeader") == "newfangled value continued newfangled value"
    (contact,) = m.contacts
    assert contact.display == 'Quoted string ""' and contact.q == 0.33
    assert contact.params == {"newparam": "newvalue", "secondparam": None, "q": "0.33"}
    assert m.routes[0].uri.params["unknown-no-value"] is None  # type: ignore[union-attr]
    assert m.body == SDP


def test_3_1_1_2_intmeth_wide_range_of_valid_characters() -> None:
    method = "!interesting-Method0123456789_*+`.%indeed'~"
    ruri = ("sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*:&it+has=1,weird!*pas$wo~d_too."
            "(doesn't-it)@example.com")
    cyrillic = "\u0431\u0435\u0437 \u0438\u043c\u0435\u043d\u0438"
    data = crlf(f"""
{method} {ruri} SIP/2.0
Via: SIP/2.0/TCP host1.example.com;branch=z9hG4bK-.!%66*_+`'~
To: "BEL:\\\x07 NUL:\\\x00 DEL:\\\x7f" <sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*@example.com>
From: token1~` token2'+_ token3*%!.- <sip:mundane@example.com>;fromParam''~+*_!.-%="{cyrillic}";tag=_token~1'+`*%!-.
Call-ID: intmeth.word%ZK-!.*_+'@word`~)(><:\\/"][?}}{{
CSeq: 139122385 {method}
Max-Forwards: 255
extensionHeader-!.%*+_`'~:\ufeff\u5927\u505c\u96fb
Content-Length: 0
""")
    m = parse_message(data)
    assert isinstance(m, Request)
    assert m.method == method and m.cseq.method == method
    assert m.raw_uri == ruri
    uri = m.uri
    assert isinstance(uri, SipURI) and uri.host == "example.com"
    assert uri.password == "&it+has=1,weird!*pas$wo~d_too.(doesn't-it)"
    assert m.to.display == "BEL:\x07 NUL:\x00 DEL:\x7f"
    assert m.from_.display == "token1~` token2'+_ token3*%!.-"
    assert m.from_.tag == "_token~1'+`*%!-."
    assert m.from_.params["fromparam''~+*_!.-%"] == '"' + cyrillic.encode().decode("latin-1") + '"'
    assert m.call_id == "intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{"
    assert m.max_forwards == 255
    assert m.get("extensionHeader-!.%*+_`'~") == "\ufeff\u5927\u505c\u96fb".encode().decode("latin-1")
    assert m.top_via.branch == "z9hG4bK-.!%66*_+`'~"  # type: ignore[union-attr]
    assert m.to_bytes() == data


def test_3_1_1_3_esc01_valid_use_of_escapes() -> None:
    m = req(f"""
INVITE sip:sips%3Auser%40example.com@example.net SIP/2.0
To: sip:%75se%72@example.com
From: <sip:I%20have%20spaces@example.net>;tag=938
Max-Forwards: 87
i: esc01.239409asdfakjkn23onasd0-3234
CSeq: 234234 INVITE
Via: SIP/2.0/UDP host5.example.net;branch=z9hG4bKkdjuw
C: application/sdp
Contact:
  <sip:cal%6Cer@host5.example.net;%6C%72;n%61me=v%61lue%25%34%31>
Content-Length: {len(SDP)}
""", SDP)
    uri = m.uri
    assert isinstance(uri, SipURI)
    assert uri.user_unescaped == "sips:user@example.com" and uri.host == "example.net"
    assert m.to.uri.user_unescaped == "user"  # type: ignore[union-attr]
    assert m.from_.uri.user_unescaped == "I have spaces"  # type: ignore[union-attr]
    assert m.call_id == "esc01.239409asdfakjkn23onasd0-3234"
    assert m.get("Content-Type") == "application/sdp"
    (c,) = m.contacts
    assert isinstance(c.uri, SipURI)
    assert c.uri.user_unescaped == "caller"
    assert c.uri.params == {"%6c%72": None, "n%61me": "v%61lue%25%34%31"}
    from sipline.sip import unescape

    assert unescape("n%61me=v%61lue%25%34%31") == "name=value%41"  # once, not "valueA"


def test_3_1_1_4_escnull_escaped_nulls() -> None:
    m = req("""
REGISTER sip:example.com SIP/2.0
To: sip:null-%00-null@example.com
From: sip:null-%00-null@example.com;tag=839923423
Max-Forwards: 70
Call-ID: escnull.39203ndfvkjdasfkq3w4otrq0adsfdfnavd
CSeq: 14398234 REGISTER
Via: SIP/2.0/UDP host5.example.com;branch=z9hG4bKkdjuw
Contact: <sip:%00@host5.example.com>
Contact: <sip:%00%00@host5.example.com>
L:0
""")
    assert m.to.uri.user_unescaped == "null-\x00-null"  # type: ignore[union-attr]
    assert [c.uri.user_unescaped for c in m.contacts] == ["\x00", "\x00\x00"]  # type: ignore
    assert [str(c.uri) for c in m.contacts] == ["sip:%00@host5.example.com",
                                                "sip:%00%00@host5.example.com"]
    assert m.content_length == 0


def test_3_1_1_5_esc02_escaped_method_is_not_register() -> None:
    m = req("""
RE%47IST%45R sip:registrar.example.com SIP/2.0
To: "%Z%45" <sip:resource@example.com>
From: "%Z%45" <sip:resource@example.com>;tag=f232jadfj23
Call-ID: esc02.asdfnqwo34rq23i34jrjasdcnl23nrlknsdf
Via: SIP/2.0/TCP host.example.com;branch=z9hG4bK209%fzsnel234
CSeq: 29344 RE%47IST%45R
Max-Forwards: 70
Contact: <sip:alias1@host1.example.com>
C%6Fntact: <sip:alias2@host2.example.com>
Contact: <sip:alias3@host3.example.com>
l: 0
""")
    assert m.method == "RE%47IST%45R" and m.method != "REGISTER"
    assert m.to.display == "%Z%45"
    assert m.top_via.branch == "z9hG4bK209%fzsnel234"  # type: ignore[union-attr]
    assert [c.uri.host for c in m.contacts] == ["host1.example.com",  # type: ignore
                                               "host3.example.com"]
    assert m.get("C%6Fntact") == "<sip:alias2@host2.example.com>"


def test_3_1_1_6_lwsdisp_no_lws_before_laquot() -> None:
    m = req("""
OPTIONS sip:user@example.com SIP/2.0
To: sip:user@example.com
From: caller<sip:caller@example.com>;tag=323
Max-Forwards: 70
Call-ID: lwsdisp.1234abcd@funky.example.com
CSeq: 60 OPTIONS
Via: SIP/2.0/UDP funky.example.com;branch=z9hG4bKkdjuw
l: 0
""")
    assert m.from_.display == "caller" and m.from_.tag == "323"


def test_3_1_1_7_longreq_long_values() -> None:
    names = ["Via", "v", "V", "Via", "ViA", "VIa", "VIA", "via", "viA", "vIa", "vIA", "V :",
             "v :", "V  :", "v  :", "Via :", "Via  :"] + ["Via"] * 16
    vias = [f"{n if n.endswith(':') else n + ':'} SIP/2.0/TCP sip{33 - i}.example.com"
            for i, n in enumerate(names)]
    long = "long" * 20
    branch = "verylong" + "long" * 60 + "branchvalue"
    display = "I have a user name of " + "extreme" * 10 + " proportion"
    text = "\n".join([
        "INVITE sip:user@example.com SIP/2.0",
        (f'To: "{display}"<sip:user@example.com:6000;unknownparam1=very{long}value;'
         f"longparam{'name' * 25}=shortvalue;very{long}ParameterNameWithNoValue>"),
        (f"F: sip:{'amazinglylongcallername' * 5}@example.net;tag={'1298298' * 30};"
         f"unknownheaderparam{'name' * 20}=unknowheaderparam{'value' * 15};"
         f"unknownValueless{'paramname' * 10}"),
        f"Call-ID: longreq.one{'really' * 20}longcallid",
        "CSeq: 3882340 INVITE",
        (f"Unknown-{'Long' * 20}-Name: unknown-{long}-value; unknown-{long}-parameter-name = "
         f"unknown-{long}-parameter-value"),
        *vias,
        f"Via: SIP/2.0/TCP host.example.com;received=192.0.2.5;branch={branch}",
        "Max-Forwards: 70",
        f"Contact: <sip:{'amazinglylongcallername' * 5}@host5.example.net>",
        "Content-Type: application/sdp",
        f"l: {len(SDP)}",
    ])
    m = req(text, SDP)
    assert len(m.via) == 34
    assert m.via[0].host == "sip33.example.com" and m.via[32].host == "sip1.example.com"
    assert m.via[33].branch == branch and m.via[33].received == "192.0.2.5"
    assert m.to.display == display
    assert m.to.uri.port == 6000  # type: ignore[union-attr]
    assert m.from_.tag == "1298298" * 30
    assert m.call_id == f"longreq.one{'really' * 20}longcallid"
    m.push_via("SIP/2.0/UDP proxy.example.com;branch=z9hG4bK35")
    assert len(parse_message(m.to_bytes()).via) == 35


def test_3_1_1_8_dblreq_extra_octets_ignored() -> None:
    register = crlf("""
REGISTER sip:example.com SIP/2.0
To: sip:j.user@example.com
From: sip:j.user@example.com;tag=43251j3j324
Max-Forwards: 8
I: dblreq.0ha0isndaksdj99sdfafnl3lk233412
Contact: sip:j.user@host.example.com
CSeq: 8 REGISTER
Via: SIP/2.0/UDP 192.0.2.125;branch=z9hG4bKkdjuw23492
Content-Length: 0
""")
    invite = crlf(f"""
INVITE sip:joe@example.com SIP/2.0
t: sip:joe@example.com
From: sip:caller@example.net;tag=141334
Max-Forwards: 8
Call-ID: dblreq.0ha0isnda977644900765@192.0.2.15
CSeq: 8 INVITE
Via: SIP/2.0/UDP 192.0.2.15;branch=z9hG4bKkdjuw380234
Content-Type: application/sdp
Content-Length: {len(SDP)}
""", SDP)
    m = parse_message(register + b"\r\n" + invite)
    assert isinstance(m, Request) and m.method == "REGISTER"
    assert m.body == b""
    assert m.call_id == "dblreq.0ha0isndaksdj99sdfafnl3lk233412"
    assert m.to.uri.user == "j.user"  # type: ignore[union-attr]
    assert not any(v.host == "192.0.2.15" for v in m.via)
    assert m.to_bytes() == register


def test_3_1_1_9_semiuri_semicolon_in_user_part() -> None:
    m = req("""
OPTIONS sip:user;par=u%40example.net@example.com SIP/2.0
To: sip:j_user@example.com
From: sip:caller@example.org;tag=33242
Max-Forwards: 3
Call-ID: semiuri.0ha0isndaksdj
CSeq: 8 OPTIONS
Accept: application/sdp, application/pkcs7-mime,
        multipart/mixed, multipart/signed,
        message/sip, message/sipfrag
Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKkdjuw
l: 0
""")
    uri = m.uri
    assert isinstance(uri, SipURI)
    assert uri.user == "user;par=u%40example.net"
    assert uri.user_unescaped == "user;par=u@example.net"
    assert uri.host == "example.com" and uri.params == {}
    assert len(m.get_list("Accept")) == 6


def test_3_1_1_10_transports_unknown_transport() -> None:
    m = req("""
OPTIONS sip:user@example.com SIP/2.0
To: sip:user@example.com
From: <sip:caller@example.com>;tag=323
Max-Forwards: 70
Call-ID:  transports.kijh4akdnaqjkwendsasfdj
Accept: application/sdp
CSeq: 60 OPTIONS
Via: SIP/2.0/UDP t1.example.com;branch=z9hG4bKkdjuw
Via: SIP/2.0/SCTP t2.example.com;branch=z9hG4bKklasjdhf
Via: SIP/2.0/TLS t3.example.com;branch=z9hG4bK2980unddj
Via: SIP/2.0/UNKNOWN t4.example.com;branch=z9hG4bKasd0f3en
Via: SIP/2.0/TCP t5.example.com;branch=z9hG4bK0a9idfnee
l: 0
""")
    assert [v.transport for v in m.via] == ["UDP", "SCTP", "TLS", "UNKNOWN", "TCP"]
    assert m.call_id == "transports.kijh4akdnaqjkwendsasfdj"


def test_3_1_1_11_mpart01_multipart_binary_body() -> None:
    binary = b"0\x82\x01R\x06\t*\x86H\x86\xf7\r\x01\x07\x02\xa0\x00\n\nSan Jose\x00\x00\r\r\n"
    body = (b"--7a9cbec02ceef655\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: binary"
            b"\r\n\r\nHello\r\n--7a9cbec02ceef655\r\nContent-Type: application/octet-stream\r\n"
            b"Content-Transfer-Encoding: binary\r\n\r\n" + binary + b"\r\n--7a9cbec02ceef655--\r\n")
    data = crlf(f"""
MESSAGE sip:kumiko@example.org SIP/2.0
Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-d87543-4dade06d0bdb11ee-1--d87543-;rport
Max-Forwards: 70
Route: <sip:127.0.0.1:5080>
Identity: r5mwreLuyDRYBi/0TiPwEsY3rEVsk/G2WxhgTV1PF7hHuLIK0YWVKZhKv9Mj8UeXqkMVbnVq37CD+813gvYjcBUaZ=
Contact: <sip:fluffy@127.0.0.1:5070>
To: <sip:kumiko@example.org>
From: <sip:fluffy@example.com>;tag=2fb0dcc9
Call-ID: 3d9485ad0c49859b@Zmx1ZmZ5LW1hYy0xNi5sb2NhbA..
CSeq: 1 MESSAGE
Content-Transfer-Encoding: binary
Content-Type: multipart/mixed;boundary=7a9cbec02ceef655
Date: Sat, 15 Oct 2005 04:44:56 GMT
User-Agent: SIPimp.org/0.2.5 (curses)
Content-Length: {len(body)}
""", body)
    m = parse_message(data)
    assert m.body == body
    top = m.top_via
    assert top is not None and (top.host, top.port, top.rport) == ("127.0.0.1", 5070, "")
    assert m.has("y")
    m.push_via("SIP/2.0/UDP proxy.example.org;branch=z9hG4bKfwd")
    assert m.to_bytes().endswith(b"\r\n\r\n" + body)


def test_3_1_1_12_unreason_utf8_reason_phrase() -> None:
    reason = "= 2**3 * 5**2 но сто девяносто девять - простое"
    m = parse_message(crlf(f"""
SIP/2.0 200 {reason}
Via: SIP/2.0/UDP 192.0.2.198;branch=z9hG4bK1324923
Call-ID: unreason.1234ksdfak3j2erwedfsASdf
CSeq: 35 INVITE
From: sip:user@example.com;tag=11141343
To: sip:user@example.edu;tag=2229
Content-Length: {len(SDP)}
Content-Type: application/sdp
Contact: <sip:user@host198.example.com>
""", SDP))
    assert isinstance(m, Response)
    assert m.status == 200 and m.reason == reason
    assert m.body == SDP


def test_3_1_1_13_noreason_empty_reason_phrase() -> None:
    m = parse_message(crlf("""
SIP/2.0 100 \nVia: SIP/2.0/UDP 192.0.2.105;branch=z9hG4bK2398ndaoe
Call-ID: noreason.asndj203insdf99223ndf
CSeq: 35 INVITE
From: <sip:user@example.com>;tag=39ansfi3
To: <sip:user@example.edu>;tag=902jndnke3
Content-Length: 0
Contact: <sip:user@host105.example.com>
"""))
    assert isinstance(m, Response)
    assert m.status == 100 and m.reason == ""


# -- 3.1.2 invalid messages -----------------------------------------------------------------

BASE = """\
{start}
To: sip:j.user@example.com
From: sip:caller@example.net;tag=134161461246
Max-Forwards: 7
Call-ID: invalid.0ha0isndaksdjasdf3234nas
CSeq: 8 {method}
Via: SIP/2.0/UDP 192.0.2.15;branch=z9hG4bKkdjuw
{extra}l: 0
"""


def msg(start: str = "INVITE sip:user@example.com SIP/2.0", method: str = "INVITE",
        extra: str = "", body: bytes = b"") -> bytes:
    text = BASE.format(start=start, method=method, extra=extra)
    if body:
        text = text.replace("l: 0", f"l: {len(body)}")
    return crlf(text, body)


def test_base_message_is_valid() -> None:
    assert isinstance(parse_message(msg()), Request)


def test_3_1_2_1_badinv01_extraneous_separators() -> None:
    data = msg(extra='Contact: "Joe" <sip:joe@example.org>;;;;\n').replace(
        b"Via: SIP/2.0/UDP 192.0.2.15;branch=z9hG4bKkdjuw", b"Via: SIP/2.0/UDP 192.0.2.15;;,;,,")
    e = rejected(data, 400, "Via")
    assert e.message is not None


def test_3_1_2_2_clerr_content_length_larger_than_message() -> None:
    data = msg(body=SDP).replace(f"l: {len(SDP)}".encode(), b"Content-Length: 9999")
    rejected(data, 400, "Content-Length mismatch")


def test_3_1_2_3_ncl_negative_content_length() -> None:
    data = msg(body=SDP).replace(f"l: {len(SDP)}".encode(), b"Content-Length: -999")
    rejected(data, 400, "Content-Length")
    data = msg(body=SDP).replace(f"l: {len(SDP)}".encode(), b"Content-Length: five")
    rejected(data, 400, "Content-Length")


def test_3_1_2_4_scalar02_request_scalar_fields_with_overlarge_values() -> None:
    data = crlf("""
REGISTER sip:example.com SIP/2.0
Via: SIP/2.0/TCP host129.example.com;branch=z9hG4bK342sdfoi3
To: <sip:user@example.com>
From: <sip:user@example.com>;tag=239232jh3
CSeq: 36893488147419103232 REGISTER
Call-ID: scalar02.23o0pd9vanlq3wnrlnewofjas9ui32
Max-Forwards: 300
Expires: 1000000000000000000000000000000000000000000000000000000000000000000000000000000000000
Contact: <sip:user@host129.example.com>
  ;expires=280297596632815
Content-Length: 0
""")
    rejected(data, 400, "Bad CSeq: number out of range")
    # Had only Max-Forwards been wrong, that is what the error names.
    only_mf = data.replace(b"36893488147419103232", b"1")
    rejected(only_mf, 400, "Max-Forwards")
    ok = only_mf.replace(b"Max-Forwards: 300", b"Max-Forwards: 70")
    m = parse_message(ok)
    with pytest.raises(SipParseError, match="out of range"):
        _ = m.expires
    with pytest.raises(SipParseError, match="out of range"):
        _ = m.contacts[0].expires


def test_3_1_2_5_scalarlg_response_scalar_fields_with_overlarge_values() -> None:
    data = crlf("""
SIP/2.0 503 Service Unavailable
Via: SIP/2.0/TCP host129.example.com;branch=z9hG4bKzzxdiwo34sw;received=192.0.2.129
To: <sip:user@example.com>
From: <sip:other@example.net>;tag=2easdjfejw
CSeq: 9292394834772304023312 OPTIONS
Call-ID: scalarlg.noase0of0234hn2qofoaf0232aewf2394r
Retry-After: 949302838503028349304023988
Warning: 1812 overture "In Progress"
Content-Length: 0
""")
    rejected(data, 400, "Bad CSeq: number out of range")


def test_3_1_2_6_quotbal_unterminated_quoted_string() -> None:
    data = msg().replace(b"To: sip:j.user@example.com", b'To: "Mr. J. User <sip:j.user@example.com>')
    e = rejected(data, 400, "Unterminated quoted string in To")
    assert e.message is not None and e.message.get("Call-ID") is not None


def test_3_1_2_7_ltgtruri_request_uri_in_angle_brackets() -> None:
    rejected(msg(start="INVITE <sip:user@example.com> SIP/2.0"), 400, "Request-URI")


def test_3_1_2_8_lwsruri_lws_in_request_uri() -> None:
    rejected(msg(start="INVITE sip:user@example.com; lr SIP/2.0"), 400,
             "Whitespace in Request-URI")


def test_3_1_2_9_lwsstart_multiple_sp_in_request_line() -> None:
    e = rejected(msg(start="INVITE  sip:user@example.com  SIP/2.0"), 400,
                 "Extra whitespace in request line")
    assert e.message is not None  # still answerable


def test_3_1_2_10_trws_trailing_sp_after_version() -> None:
    rejected(msg(start="OPTIONS sip:remote-target@example.com SIP/2.0  ", method="OPTIONS"), 400,
             "Trailing whitespace in request line")


def test_3_1_2_11_escruri_escaped_headers_in_request_uri() -> None:
    rejected(msg(start="INVITE sip:user@example.com?Route=%3Csip:example.com%3E SIP/2.0"), 400,
             "Request-URI must not carry headers")


def test_3_1_2_12_baddate_is_not_an_error() -> None:
    m = parse_message(msg(extra="Date: Fri, 01 Jan 2010 16:00:00 EST\n"))
    assert m.get("Date") == "Fri, 01 Jan 2010 16:00:00 EST"


def test_3_1_2_13_regbadct_uri_with_headers_outside_angle_brackets() -> None:
    m = parse_message(msg(start="REGISTER sip:example.com SIP/2.0", method="REGISTER",
                          extra="Contact: sip:user@example.com?Route=%3Csip:sip.example.com%3E\n"))
    with pytest.raises(SipParseError, match="enclosed in <>"):
        _ = m.contacts


def test_3_1_2_14_badaspec_spaces_inside_angle_brackets() -> None:
    data = msg(start="OPTIONS sip:user@example.org SIP/2.0", method="OPTIONS").replace(
        b"To: sip:j.user@example.com", b'To: "Watson, Thomas" < sip:t.watson@example.org >')
    rejected(data, 400, "Whitespace inside <> in To")


def test_3_1_2_15_baddn_unquoted_display_name_with_comma() -> None:
    data = msg(start="OPTIONS sip:t.watson@example.org SIP/2.0", method="OPTIONS").replace(
        b"From: sip:caller@example.net;tag=134161461246",
        b"From:    Bell, Alexander <sip:a.g.bell@example.com>;tag=43")
    rejected(data, 400, "Unquoted display name contains a comma in From")
    # As archived (no blank line after the headers): still a 400.
    e = rejected(data[:-2], 400, "Missing blank line")
    assert e.message is not None


def test_3_1_2_16_badvers_unknown_protocol_version() -> None:
    e = rejected(msg(start="OPTIONS sip:t.watson@example.org SIP/7.0", method="OPTIONS"), 505,
                 "version")
    assert e.message is not None
    assert make_response(e.message, 505).to_bytes().startswith(  # type: ignore[arg-type]
        b"SIP/2.0 505 Version Not Supported\r\n")


def test_3_1_2_17_mismatch01_method_mismatch() -> None:
    rejected(msg(start="OPTIONS sip:user@example.com SIP/2.0", method="INVITE"), 400,
             "CSeq method does not match request method")


def test_3_1_2_18_mismatch02_unknown_method_with_mismatched_cseq() -> None:
    rejected(msg(start="NEWMETHOD sip:user@example.com SIP/2.0", method="INVITE"), 501,
             "CSeq method does not match request method")


def test_3_1_2_19_bigcode_overlarge_response_code() -> None:
    data = crlf("""
SIP/2.0 4294967301 better not break the receiver
Via: SIP/2.0/UDP 192.0.2.105;branch=z9hG4bK2398ndaoe
Call-ID: bigcode.asdof3uj203asdnf3429uasdhfas3ehjasdfas9i
CSeq: 353494 INVITE
From: <sip:user@example.com>;tag=39ansfi3
To: <sip:user@example.edu>;tag=902jndnke3
Content-Length: 0
""")
    rejected(data, 400, "status code")


# -- 3.2 transaction layer, 3.3 application layer, 3.4 backward compatibility -------------


def test_3_2_1_badbranch_magic_cookie_alone_parses() -> None:
    m = parse_message(msg().replace(b"branch=z9hG4bKkdjuw", b"branch=z9hG4bK"))
    assert m.top_via.branch == "z9hG4bK"  # type: ignore[union-attr]


def test_3_3_1_insuf_missing_required_headers() -> None:
    data = crlf("""
INVITE sip:user@example.com SIP/2.0
CSeq: 193942 INVITE
Via: SIP/2.0/UDP 192.0.2.95;branch=z9hG4bKkdj.insuf
Content-Type: application/sdp
l: 0
""")
    e = rejected(data, 400, "Missing")
    assert isinstance(e.message, Request)
    r = make_response(e.message, 400, e.reason)
    assert b"Via: SIP/2.0/UDP 192.0.2.95;branch=z9hG4bKkdj.insuf" in r.to_bytes()


def test_3_3_2_unkscm_unknown_request_uri_scheme_parses() -> None:
    m = parse_message(msg(start="OPTIONS nobodyKnowsThisScheme:totallyopaquecontent SIP/2.0",
                          method="OPTIONS"))
    assert isinstance(m, Request) and isinstance(m.uri, AbsoluteURI)
    assert m.uri.scheme == "nobodyknowsthisscheme"


def test_3_3_3_novelsc_unknown_scheme_parses() -> None:
    m = parse_message(msg(start="OPTIONS soap.beep://192.0.2.103:3002 SIP/2.0", method="OPTIONS"))
    assert isinstance(m, Request) and isinstance(m.uri, AbsoluteURI)
    assert m.uri.scheme == "soap.beep"


def test_3_3_4_unksm2_unknown_schemes_in_headers_parse() -> None:
    data = msg(start="REGISTER sip:example.com SIP/2.0", method="REGISTER",
               extra="Contact: <name:John_Smith>\n")
    data = data.replace(b"To: sip:j.user@example.com", b"To: isbn:2983792873")
    data = data.replace(b"From: sip:caller@example.net;tag=134161461246",
                        b"From: <http://www.example.com>;tag=3234233")
    m = parse_message(data)
    assert m.to.uri.scheme == "isbn" and m.from_.uri.scheme == "http"
    assert m.contacts[0].uri.scheme == "name"


def test_3_3_5_bext01_unknown_option_tags_parse() -> None:
    m = parse_message(msg(extra="Require: nothingSupportsThis, nothingSupportsThisEither\n"
                                "Proxy-Require: noProxiesSupportThis, norDoAnyProxiesSupportThis\n"))
    assert m.require == ["nothingsupportsthis", "nothingsupportsthiseither"]
    assert m.get_list("Proxy-Require") == ["noProxiesSupportThis", "norDoAnyProxiesSupportThis"]


def test_3_3_7_regaut01_unknown_authorization_scheme_parses() -> None:
    m = parse_message(msg(start="REGISTER sip:example.com SIP/2.0", method="REGISTER",
                          extra="Authorization: NoOneKnowsThisScheme opaque-data=here\n"))
    assert m.get("Authorization") == "NoOneKnowsThisScheme opaque-data=here"


def test_3_3_8_multi01_multiple_single_valued_headers() -> None:
    data = msg(extra="CSeq: 59 INVITE\nCall-ID: multi01.98asdh@192.0.2.2\n")
    rejected(data, 400, "Duplicate")


def test_3_3_9_mcl01_multiple_content_lengths() -> None:
    data = msg(extra="Content-Length: 13\n", body=b"There's no way to know how many octets")
    rejected(data, 400, "Content-Length")


def test_3_3_11_zeromf_parses() -> None:
    assert parse_message(msg().replace(b"Max-Forwards: 7", b"Max-Forwards: 0")).max_forwards == 0


def test_3_3_12_cparam01_and_3_3_13_cparam02_contact_params() -> None:
    m = parse_message(msg(start="REGISTER sip:example.com SIP/2.0", method="REGISTER",
                          extra="Contact: sip:+19725552222@gw1.example.net;unknownparam\n"))
    (c,) = m.contacts
    assert c.uri.params == {} and c.params == {"unknownparam": None}  # type: ignore[union-attr]
    m = parse_message(msg(start="REGISTER sip:example.com SIP/2.0", method="REGISTER",
                          extra="Contact: <sip:+19725552222@gw1.example.net;unknownparam>\n"))
    (c,) = m.contacts
    assert c.uri.params == {"unknownparam": None} and c.params == {}  # type: ignore[union-attr]
    assert str(c.uri) == "sip:+19725552222@gw1.example.net;unknownparam"


def test_3_3_14_regescrt_escaped_headers_in_contact_kept() -> None:
    m = parse_message(msg(start="REGISTER sip:example.com SIP/2.0", method="REGISTER",
                          extra="M: <sip:user@example.com?Route=%3Csip:sip.example.com%3E>\n"))
    (c,) = m.contacts
    assert c.uri.headers == "Route=%3Csip:sip.example.com%3E"  # type: ignore[union-attr]
    assert str(c.uri) == "sip:user@example.com?Route=%3Csip:sip.example.com%3E"
    assert not m.has("Route")


def test_3_4_1_inv2543_rfc2543_style_invite() -> None:
    data = crlf("""
INVITE sip:UserB@example.com SIP/2.0
Via: SIP/2.0/UDP iftgw.example.com
From: <sip:+13035551111@ift.client.example.net;user=phone>
Record-Route: <sip:UserB@example.com;maddr=ss1.example.com>
To: sip:+16505552222@ss1.example.net;user=phone
Call-ID: inv2543.1717@ift.client.example.com
CSeq: 56 INVITE
Content-Type: application/sdp
""", SDP)
    m = parse_message(data)
    assert m.top_via.branch is None  # type: ignore[union-attr]
    assert m.from_.tag is None
    assert m.body == SDP  # rest of the datagram
    assert m.to.params == {"user": "phone"}
    assert m.record_routes[0].uri.maddr == "ss1.example.com"  # type: ignore[union-attr]
