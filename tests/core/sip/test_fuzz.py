"""Property tests: whatever the input, the message layer raises only SipParseError.

Inputs are arbitrary bytes and mutations (byte flips, insertions of delimiter characters,
truncations, duplicated/swapped/folded lines) of valid messages, up to 64 KiB. Every parsed
message then has each lazy property read, is re-serialised, answered with make_response and
proxied (push/pop Via). The tidy fast path is also checked against the general path.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sip_samples import BASIC_200, BASIC_INVITE, crlf
from sipline.sip import (
    Request,
    Response,
    SipMessage,
    SipParseError,
    StreamFramer,
    make_response,
    parse_message,
)
from sipline.sip import message as message_module

SEEDS = [
    BASIC_INVITE,
    BASIC_200,
    crlf("""
REGISTER sip:registrar.example.com SIP/2.0
v: SIP/2.0/UDP [2001:db8::9:1]:5060;branch=z9hG4bKnashds7;rport, SIP/2.0/TCP b.example.com
Max-Forwards: 70
To: "Bob \\"B\\"" <sip:bob@example.com>
f: Bob <sip:bob@example.com>;tag=456248
i: 843817637684230@998sdasdh09
CSeq: 1826 REGISTER
m: <sip:bob@192.0.2.4;transport=tcp>;expires=7200;q=0.5, *
Contact: sip:bob@[2001:db8::2];+sip.instance="<urn:uuid:1>"
Route: <sip:p1.example.com;lr>, <sip:p2.example.com;lr>
Supported: path, outbound
Expires:
 7200
l: 0
"""),
    crlf("""
MESSAGE sip:user;par=u%40example.net@example.com SIP/2.0
Via: SIP/2.0/TLS client.example.com:5061;branch=z9hG4bKnashd92;received=192.0.2.1
Max-Forwards: 70
From: sip:user@example.com;tag=49583
To: tel:+1-201-555-0123
Call-ID: asd88asd77a@1.2.3.4
CSeq: 1 MESSAGE
Content-Type: multipart/mixed;boundary=x
Content-Length: 12
""", b"\x00\n\r--x--\r\n\xff\x85"),
    b"SIP/2.0 100 \r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nCSeq: 1 INVITE\r\nl: 0\r\n\r\n",
]

# Several Vias on one line, as sipp writes them in its responses (and some UAs in requests).
JOINED_VIA_180 = crlf("""
SIP/2.0 180 Ringing
Via: SIP/2.0/UDP 127.0.0.1:5080;branch=z9hG4bK8ae0.d4b7.0, SIP/2.0/UDP 127.0.0.1:25060;branch=z9hG4bK-1858-1-0;rport=25060
Record-Route: <sip:127.0.0.1:5080;lr>
From: <sip:caller1@127.0.0.1:25060>;tag=1858SIPpTag091
To: <sip:uas@127.0.0.1:5080>;tag=1856SIPpTag011
Call-ID: 1-1858@127.0.0.1
CSeq: 1 INVITE
Contact: <sip:127.0.0.1:25090;transport=UDP>
Content-Length: 0
""")
JOINED_VIA_BYE = crlf("""
BYE sip:uas@127.0.0.1:25090 SIP/2.0
Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKa1 ,SIP/2.0/TCP 10.0.0.2;branch=z9hG4bKb2,SIP/2.0/UDP [2001:db8::1]:5070;branch=z9hG4bKc3
From: <sip:caller1@127.0.0.1:25060>;tag=1858SIPpTag091
To: <sip:uas@127.0.0.1:5080>;tag=1856SIPpTag011
Call-ID: 1-1858@127.0.0.1
CSeq: 2 BYE
Max-Forwards: 69
Content-Length: 0
""")
SEEDS += [JOINED_VIA_180, JOINED_VIA_BYE]

SPECIAL = [b"\r", b"\n", b"\r\n", b"\r\n ", b" ", b"\t", b'"', b"\\", b"<", b">", b";", b",",
           b":", b"=", b"%", b"@", b"[", b"]", b"?", b"\x00", b"\x85", b"\xa0", b"\xff",
           b"9999999999999999999999", b"-1", b"SIP/2.0", b"\r\n\r\n", b"z9hG4bK", b"*"]

SETTINGS = settings(
    max_examples=400,
    # Linear work on 64 KiB takes milliseconds; a quadratic blow-up takes seconds. The margin
    # keeps a busy CI machine from failing on scheduling noise.
    deadline=300,
    # Building inputs up to 64 KiB is deliberately part of the search space, so generation is
    # slower and bigger than Hypothesis expects by default.
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.sampled_from(["flip", "insert", "delete", "truncate", "dup_line",
                                   "swap_lines", "fold", "grow"]))
        if not data:
            data += draw(st.binary(max_size=16))
            continue
        pos = draw(st.integers(0, len(data) - 1))
        if op == "flip":
            data[pos] = draw(st.integers(0, 255))
        elif op == "insert":
            data[pos:pos] = draw(st.sampled_from(SPECIAL) | st.binary(min_size=1, max_size=8))
        elif op == "delete":
            del data[pos : pos + draw(st.integers(1, 8))]
        elif op == "truncate":
            del data[pos:]
        else:
            lines = bytes(data).split(b"\r\n")
            i = draw(st.integers(0, len(lines) - 1))
            j = draw(st.integers(0, len(lines) - 1))
            if op == "dup_line":
                lines.insert(j, lines[i])
            elif op == "swap_lines":
                lines[i], lines[j] = lines[j], lines[i]
            elif op == "fold":
                lines[i] = lines[i].replace(b" ", b"\r\n ", 1)
            else:  # grow a line towards the 64 KiB limit
                lines[i] = lines[i] + lines[i][-1:] * draw(st.integers(1, 40_000))
            data = bytearray(b"\r\n".join(lines))
    return bytes(data[:65535])


def exercise(m: SipMessage) -> None:
    """Use a parsed (or partial) message the way the layers above do."""
    props = ["via", "top_via", "from_", "to", "call_id", "cseq", "max_forwards",
             "content_length", "contacts", "contact_star", "routes", "record_routes", "require",
             "proxy_require", "supported", "allow", "expires", "body"]
    for name in props:
        try:
            value = getattr(m, name)
        except SipParseError:
            continue
        if name in ("from_", "to"):
            for sub in ("uri", "tag", "q", "expires"):
                try:
                    getattr(value, sub)
                except SipParseError:
                    pass
            str(value)
        if name == "via":
            for v in value:
                _ = str(v), v.branch, v.received, v.rport
                try:
                    _ = v.ttl
                except SipParseError:
                    pass
    if isinstance(m, Request):
        try:
            str(m.uri)
        except SipParseError:
            pass
    list(m.iter_headers())
    _ = m.get("Via"), m.get_all("v"), m.has("X-Unknown")
    try:
        m.get_list("Route")
    except SipParseError:
        pass
    m.to_bytes()
    if isinstance(m, Request):
        make_response(m, 200, to_tag="fuzz").to_bytes()
        make_response(m, 400, "Bad Request", headers=[("Warning", "399 x \"y\"")]).to_bytes()
    c = m.copy()
    c.push_via("SIP/2.0/UDP fuzz.example.com;branch=z9hG4bKfuzz")
    c.to_bytes()
    try:
        c.pop_via()
        c.pop_via()
    except SipParseError:
        pass
    c.to_bytes()


def parse_and_exercise(data: bytes, stream: bool) -> None:
    try:
        m = parse_message(data, stream=stream)
    except SipParseError as e:
        assert isinstance(e.status, int) and e.reason.isascii() and "\n" not in e.reason
        if e.message is not None:
            exercise(e.message)
        return
    out = m.to_bytes()
    again = parse_message(out, stream=True)  # what we send always reparses, exactly framed
    assert again.to_bytes() == out
    exercise(m)


@SETTINGS
@given(st.binary(max_size=2048), st.booleans())
def test_arbitrary_bytes(data: bytes, stream: bool) -> None:
    parse_and_exercise(data, stream)


@SETTINGS
@given(mutated(), st.booleans())
def test_mutated_messages(data: bytes, stream: bool) -> None:
    parse_and_exercise(data, stream)


@SETTINGS
@given(mutated(), st.lists(st.integers(1, 200), min_size=1, max_size=20))
def test_stream_framer_chunks(data: bytes, cuts: list[int]) -> None:
    stream = data + b"\r\n\r\n" + data
    f = StreamFramer()
    pos = 0
    out: list[bytes] = []
    try:
        for n in cuts * (len(stream) // max(sum(cuts), 1) + 1):
            if pos >= len(stream):
                break
            out += f.feed(stream[pos : pos + n])
            pos += n
    except SipParseError:
        return
    for item in out:
        if item != b"\r\n\r\n":
            parse_and_exercise(item, True)


def snapshot(data: bytes) -> Any:
    try:
        m = parse_message(data)
    except SipParseError as e:
        return ("error", e.reason, e.status, e.message is not None)
    common: tuple[Any, ...] = (
        type(m).__name__, m.version, m.to_bytes(), list(m.iter_headers()), m.body,
        [str(v) for v in m.via], m.cseq, m.content_length,
    )
    for name in ("from_", "to"):
        try:
            a = getattr(m, name)
            common += (a.display, str(a.uri), a.params)
        except SipParseError as e:
            common += (e.reason,)
    if isinstance(m, Request):
        return common + (m.method, m.raw_uri, str(m.uri), m.call_id, m.max_forwards)
    assert isinstance(m, Response)
    return common + (m.status, m.reason)


# The paths are switched off through module globals, never by replacing functions: the
# compiled build reads globals at run time but calls its functions directly.


def _tidy_and_general_only(mp: pytest.MonkeyPatch) -> None:
    """No layout-specialised parser, and none learnt."""
    mp.setattr(message_module, "_SPECS", {})
    mp.setattr(message_module, "_SEEN", {})
    mp.setattr(message_module, "_TRIES", {})
    mp.setattr(message_module, "_COMPILE_BUDGET", 0)


def _general_only(mp: pytest.MonkeyPatch) -> None:
    _tidy_and_general_only(mp)
    mp.setattr(message_module, "_REQUEST_TIDY_RE", re.compile(r"(?!)"))  # never matches


def _is_compiled() -> bool:
    return not str(message_module.__file__).endswith(".py")


def _warm() -> None:
    """Parse every seed a few times so that their layouts get specialised parsers."""
    for seed in SEEDS:
        for _ in range(3):
            try:
                parse_message(seed)
            except SipParseError:
                pass


_warm()


@SETTINGS
@given(mutated())
def test_fast_paths_agree_with_general_path(data: bytes) -> None:
    specialised = snapshot(data)  # layout-specialised parser, tidy path, general path
    with pytest.MonkeyPatch.context() as mp:
        _tidy_and_general_only(mp)
        tidy = snapshot(data)  # tidy path, general path
    with pytest.MonkeyPatch.context() as mp:
        _general_only(mp)
        general = snapshot(data)  # general path only
    assert specialised == tidy == general


def test_path_switches_work() -> None:
    """The switches above really take the fast paths out (in either build)."""
    _warm()
    assert message_module._SPECS
    with pytest.MonkeyPatch.context() as mp:
        _general_only(mp)
        for _ in range(3):
            msg = parse_message(BASIC_INVITE)
        # Only the general path fills in the header values up front (careful validation).
        assert getattr(msg, "_values", None) is not None
        assert message_module._SPECS == {}
    with pytest.MonkeyPatch.context() as mp:
        _tidy_and_general_only(mp)
        for _ in range(3):
            msg = parse_message(BASIC_INVITE)
        assert getattr(msg, "_values", None) is None
        assert message_module._SPECS == {}


def test_tidy_messages_have_a_specialised_parser() -> None:
    _warm()
    for data in (BASIC_INVITE, BASIC_200, JOINED_VIA_180):
        end = data.find(b"\r\n\r\n")
        head = data[:end].decode("latin-1")
        matches = [
            (spec, m)
            for specs in message_module._SPECS.values()
            for spec in specs
            if (m := spec.regex.fullmatch(head)) is not None
        ]
        assert len(matches) == 1
        spec, m = matches[0]
        assert spec.build(m, data, len(data), end + 4, False, head) is not None


@pytest.mark.skipif(
    _is_compiled(), reason="spies on module functions: compiled code calls them directly"
)
def test_fast_paths_are_taken_for_tidy_messages() -> None:
    _warm()
    built: list[object] = []
    original_build = message_module._Spec.build

    def spy_build(self: Any, *args: Any) -> Any:
        result = original_build(self, *args)
        built.append(result)
        return result

    careful: list[int] = []
    original_careful = message_module._validate_request_careful

    def spy_careful(*args: Any) -> None:
        careful.append(1)
        original_careful(*args)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(message_module._Spec, "build", spy_build)
        mp.setattr(message_module, "_validate_request_careful", spy_careful)
        parse_message(BASIC_INVITE)
        parse_message(BASIC_200)
        assert len(built) == 2 and all(b is not None for b in built)
        _tidy_and_general_only(mp)
        parse_message(BASIC_INVITE)  # the tidy path, without a specialised parser
    assert careful == []
