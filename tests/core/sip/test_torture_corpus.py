"""Byte-exact RFC 4475 / RFC 5118 corpus: every file parses or raises as its INDEX.md says.

The corpus is not part of the project. It is found through ``SIPLINE_TORTURE_DIR`` or at
``<repo>/../shared/torture``; without it these tests are skipped.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from sipline.sip import (
    KEEPALIVE_PING,
    Request,
    Response,
    SipParseError,
    StreamFramer,
    make_response,
    parse_message,
)


def _corpus_dir() -> Path | None:
    env = os.environ.get("SIPLINE_TORTURE_DIR")
    candidates = [Path(env)] if env else []
    candidates.append(Path(__file__).resolve().parents[3].parent / "shared" / "torture")
    for c in candidates:
        if (c / "torture").is_dir():
            return c
    return None


CORPUS = _corpus_dir()
needs_corpus = pytest.mark.skipif(
    CORPUS is None,
    reason="torture corpus not found: set SIPLINE_TORTURE_DIR or provide ../shared/torture",
)

OK = "ok"
# file -> ("ok", expected number of Via values, request/response) or (status, reason substring).
RFC4475: dict[str, tuple[object, ...]] = {
    # 3.1.1 valid
    "wsinv.dat": (OK, 3, Request),
    "intmeth.dat": (OK, 1, Request),
    "esc01.dat": (OK, 1, Request),
    "escnull.dat": (OK, 1, Request),
    "esc02.dat": (OK, 1, Request),
    "lwsdisp.dat": (OK, 1, Request),
    "longreq.dat": (OK, 34, Request),
    "dblreq.dat": (OK, 1, Request),
    "semiuri.dat": (OK, 1, Request),
    "transports.dat": (OK, 5, Request),
    "mpart01.dat": (OK, 1, Request),
    "unreason.dat": (OK, 1, Response),
    "noreason.dat": (OK, 1, Response),
    # 3.1.2 invalid
    "badinv01.dat": (400, "Via"),
    "clerr.dat": (400, "Content-Length mismatch"),
    "ncl.dat": (400, "Content-Length"),
    "scalar02.dat": (400, "Bad CSeq: number out of range"),
    "scalarlg.dat": (400, "Bad CSeq: number out of range"),
    "quotbal.dat": (400, "Unterminated quoted string in To"),
    "ltgtruri.dat": (400, "Request-URI"),
    "lwsruri.dat": (400, "Whitespace in Request-URI"),
    "lwsstart.dat": (400, "Extra whitespace in request line"),
    "trws.dat": (400, "Trailing whitespace in request line"),
    "escruri.dat": (400, "Request-URI must not carry headers"),
    "baddate.dat": (OK, 1, Request),  # Date is not validated
    "regbadct.dat": (OK, 1, Request),  # Contact is parsed lazily (and then refused)
    "badaspec.dat": (400, "Whitespace inside <> in To"),
    "baddn.dat": (400, "Missing blank line after headers"),  # archived without one
    "badvers.dat": (505, "version"),
    "mismatch01.dat": (400, "CSeq method does not match request method"),
    "mismatch02.dat": (501, "CSeq method does not match request method"),
    "bigcode.dat": (400, "status code"),
    # 3.2, 3.3, 3.4
    "badbranch.dat": (OK, 1, Request),
    "insuf.dat": (400, "Missing"),
    "unkscm.dat": (OK, 1, Request),
    "novelsc.dat": (OK, 1, Request),
    "unksm2.dat": (OK, 1, Request),
    "bext01.dat": (OK, 1, Request),
    "invut.dat": (OK, 1, Request),
    "regaut01.dat": (OK, 1, Request),
    "multi01.dat": (400, "Duplicate"),
    "mcl01.dat": (400, "Content-Length"),
    "bcast.dat": (OK, 2, Response),
    "zeromf.dat": (OK, 1, Request),
    "cparam01.dat": (OK, 1, Request),
    "cparam02.dat": (OK, 1, Request),
    "regescrt.dat": (OK, 1, Request),
    "sdp01.dat": (OK, 1, Request),
    "inv2543.dat": (OK, 1, Request),
    # not referenced by the RFC
    "test.dat": (400, "request line"),
}

RFC5118: dict[str, tuple[object, ...]] = {
    "ipv6-good.dat": (OK, 1, Request),
    "ipv6-bad.dat": (400, "Request-URI"),
    "port-ambiguous.dat": (OK, 1, Request),
    "port-unambiguous.dat": (OK, 1, Request),
    "via-received-param-with-delim.dat": (OK, 1, Request),
    "via-received-param-no-delim.dat": (OK, 1, Request),
    "ipv6-in-sdp.dat": (OK, 1, Request),
    "mult-ip-in-header.dat": (OK, 3, Request),
    "mult-ip-in-sdp.dat": (OK, 1, Request),
    "ipv4-mapped-ipv6.dat": (OK, 2, Request),
    "ipv6-bug-abnf-3-colons.dat": (OK, 1, Request),
    "ipv6-correct-abnf-2-colons.dat": (OK, 1, Request),
    # The archive's own bytes: bare LF line ends (accepted leniently), §4.10 without a
    # blank line after the headers, and Content-Lengths that do not match the bodies.
    "archive/ipv6-good": (OK, 1, Request),
    "archive/ipv6-bad": (400, "Request-URI"),
    "archive/port-ambiguous": (OK, 1, Request),
    "archive/port-unambiguous": (OK, 1, Request),
    "archive/via-received-param-with-delim": (OK, 1, Request),
    "archive/via-received-param-no-delim": (OK, 1, Request),
    "archive/ipv6-in-sdp": (400, "Content-Length mismatch"),
    "archive/mult-ip-in-header": (OK, 3, Request),
    "archive/mult-ip-in-sdp": (400, "Content-Length mismatch"),
    "archive/ipv4-mapped-ipv6": (OK, 2, Request),
    "archive/ipv6-bug-abnf-3-colons": (400, "Missing blank line after headers"),
    "archive/ipv6-correct-abnf-2-colons": (400, "Missing blank line after headers"),
}

CASES = [("torture", k, v) for k, v in RFC4475.items()] + [
    ("torture-ipv6", k, v) for k, v in RFC5118.items()]


def _read(folder: str, name: str) -> bytes:
    assert CORPUS is not None
    return (CORPUS / folder / name).read_bytes()


@needs_corpus
def test_table_covers_every_file() -> None:
    assert CORPUS is not None
    for folder, table in (("torture", RFC4475), ("torture-ipv6", RFC5118)):
        on_disk = {p.name for p in (CORPUS / folder).glob("*.dat")}
        on_disk |= {f"archive/{p.name}" for p in (CORPUS / folder / "archive").glob("*")
                    if p.is_file()}
        assert on_disk == set(table), folder


def _touch_everything(m: Request | Response) -> None:
    """Access every lazy property; each may only raise SipParseError."""
    for attr in ("via", "top_via", "from_", "to", "call_id", "cseq", "max_forwards",
                 "content_length", "contacts", "contact_star", "routes", "record_routes",
                 "require", "proxy_require", "supported", "allow", "expires", "body"):
        try:
            getattr(m, attr)
        except SipParseError:
            pass
    if isinstance(m, Request):
        try:
            _ = m.uri
        except SipParseError:
            pass
    list(m.iter_headers())
    m.to_bytes()


@needs_corpus
@pytest.mark.parametrize(("folder", "name", "expected"), CASES, ids=[c[1] for c in CASES])
def test_corpus_file(folder: str, name: str, expected: tuple[object, ...]) -> None:
    data = _read(folder, name)
    if expected[0] == OK:
        _, n_via, kind = expected
        m = parse_message(data)
        assert isinstance(m, kind)  # type: ignore[arg-type]
        assert len(m.via) == n_via
        had_cl = m.content_length is not None
        _touch_everything(m)
        if isinstance(m, Request):
            make_response(m, 200, to_tag="t").to_bytes()
        # Unchanged messages come back as received (minus anything after Content-Length).
        out = m.to_bytes()
        if had_cl:
            assert data.startswith(out)
        else:  # added on output (RFC 2543 style, body = rest of the datagram)
            assert out.endswith(b"Content-Length: %d\r\n\r\n" % len(m.body) + m.body)
        return
    status, reason = expected
    with pytest.raises(SipParseError) as ei:
        parse_message(data)
    err = ei.value
    assert reason in err.reason, err.reason  # type: ignore[operator]
    if data.startswith(b"SIP/"):
        return  # responses are dropped: the status does not matter
    assert err.status == status
    if err.message is not None:
        _touch_everything(err.message)  # type: ignore[arg-type]
        make_response(err.message, err.status, err.reason).to_bytes()  # type: ignore[arg-type]


@needs_corpus
def test_rfc4475_key_facts() -> None:
    wsinv = parse_message(_read("torture", "wsinv.dat"))
    assert wsinv.max_forwards == 68 and wsinv.cseq == (9, "INVITE")
    assert wsinv.get("s") == "" and wsinv.get("UnknownHeaderWithUnusualValue") == ";;,,;;,;"
    esc02 = parse_message(_read("torture", "esc02.dat"))
    assert isinstance(esc02, Request) and esc02.method == "RE%47IST%45R"
    assert len(esc02.contacts) == 2 and esc02.has("C%6Fntact")
    dblreq = parse_message(_read("torture", "dblreq.dat"))
    assert isinstance(dblreq, Request) and dblreq.method == "REGISTER" and dblreq.body == b""
    semiuri = parse_message(_read("torture", "semiuri.dat"))
    assert semiuri.uri.user == "user;par=u%40example.net"  # type: ignore[union-attr]
    transports = parse_message(_read("torture", "transports.dat"))
    assert [v.transport for v in transports.via] == ["UDP", "SCTP", "TLS", "UNKNOWN", "TCP"]
    mpart = _read("torture", "mpart01.dat")
    m = parse_message(mpart)
    assert len(m.body) == 553 and mpart.endswith(m.body) and b"\x00" in m.body
    m.push_via("SIP/2.0/UDP proxy.example.com;branch=z9hG4bKfwd")
    assert m.to_bytes().endswith(m.body)
    intmeth = parse_message(_read("torture", "intmeth.dat"))
    assert intmeth.to.display == "BEL:\x07 NUL:\x00 DEL:\x7f"
    noreason = parse_message(_read("torture", "noreason.dat"))
    assert isinstance(noreason, Response) and noreason.reason == ""
    inv2543 = parse_message(_read("torture", "inv2543.dat"))
    assert len(inv2543.body) == 105 and inv2543.top_via.branch is None  # type: ignore[union-attr]
    regbadct = parse_message(_read("torture", "regbadct.dat"))
    with pytest.raises(SipParseError):
        _ = regbadct.contacts
    longreq = _read("torture", "longreq.dat")
    assert len(longreq) == 3515


@needs_corpus
def test_stream_framing_of_framing_tests() -> None:
    # Over TCP, clerr waits for more data; ncl and mcl01 are unrecoverable.
    f = StreamFramer()
    assert f.feed(_read("torture", "clerr.dat")) == []
    for name in ("ncl.dat", "mcl01.dat"):
        with pytest.raises(SipParseError):
            StreamFramer().feed(_read("torture", name))
    # Valid messages frame to themselves; keep-alives between them.
    wsinv = _read("torture", "wsinv.dat")
    f = StreamFramer()
    assert f.feed(wsinv + b"\r\n\r\n" + wsinv) == [wsinv, KEEPALIVE_PING, wsinv]
    assert parse_message(wsinv, stream=True).cseq.seq == 9
