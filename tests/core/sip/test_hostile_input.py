"""Hostile input must cost linear time: long runs of delimiters in every checked header.

A regex that backtracks on such input turns a 64 KiB datagram into seconds of CPU (the
parsers once had two: tel numbers and line unfolding). Each case here must finish well
within a second.
"""

from __future__ import annotations

import time

import pytest
from sip_samples import BASIC_INVITE
from sipline.sip import (
    SipParseError,
    StreamFramer,
    make_response,
    parse_message,
    parse_name_addr,
    parse_params,
    parse_uri,
    parse_via,
    split_comma,
)

FILLERS = [" ", "\t", ";", ",", '"', "\\", "<", ">", ":", "@", "%", "=", "a", "1", "[", "]", "/",
           "?", "\r\n ", "\x00", "a=", ";a", '"a', "\\\"", " a", "%4", "::", "1.", "+1", "sip:",
           "<sip:a@b>", ";;", "\t;"]
N = 20_000
LIMIT = 1.0  # seconds; linear work here takes milliseconds

HEADERS = ["Via", "From", "To", "Call-ID", "CSeq", "Max-Forwards", "Contact", "Route",
           "Supported", "Expires", "Content-Length", "X-Other"]


def timed(fn: object, *args: object) -> float:
    t0 = time.perf_counter()
    try:
        fn(*args)  # type: ignore[operator]
    except SipParseError:
        pass
    return time.perf_counter() - t0


def touch(data: bytes) -> None:
    try:
        m = parse_message(data)
    except SipParseError as e:
        if e.message is not None:
            make_response(e.message, 400).to_bytes()  # type: ignore[arg-type]
        return
    for attr in ("via", "from_", "to", "call_id", "cseq", "contacts", "routes", "supported",
                 "expires", "max_forwards"):
        try:
            getattr(m, attr)
        except SipParseError:
            pass
    m.to_bytes()


@pytest.mark.parametrize("filler", FILLERS)
def test_value_parsers_are_linear(filler: str) -> None:
    run = filler * (N // len(filler))
    for fn, text in [
        (parse_uri, "sip:" + run), (parse_uri, "sip:a@" + run), (parse_uri, "sip:a@b;" + run),
        (parse_uri, "tel:+" + run), (parse_uri, "tel:" + run), (parse_uri, "x:" + run),
        (parse_uri, run), (parse_via, "SIP/2.0/UDP h;" + run), (parse_via, run),
        (parse_via, "SIP / 2.0 / UDP " + run), (parse_name_addr, run),
        (parse_name_addr, '"' + run), (parse_name_addr, "a " + run + "<sip:a@b>"),
        (parse_name_addr, "<sip:a@b>" + run), (parse_name_addr, "sip:a@b" + run),
        (parse_params, run), (parse_params, ";a=" + run), (split_comma, run),
    ]:
        assert timed(fn, text) < LIMIT, (fn, text[:40])


@pytest.mark.parametrize("header", HEADERS)
@pytest.mark.parametrize("filler", FILLERS[::3])
def test_messages_are_linear(header: str, filler: str) -> None:
    run = (filler * (N // len(filler))).encode("latin-1")
    line = header.encode() + b": "
    data = BASIC_INVITE.replace(b"\r\nContact:", b"\r\n" + line + run + b"\r\nContact:", 1)
    assert timed(touch, data) < LIMIT
    assert timed(StreamFramer().feed, data) < LIMIT


def test_trickled_stream_is_linear() -> None:
    data = b"INVITE sip:a@b SIP/2.0\r\nX: " + b"a" * 30_000
    f = StreamFramer()
    t0 = time.perf_counter()
    for i in range(len(data)):
        f.feed(data[i : i + 1])
    assert time.perf_counter() - t0 < 2 * LIMIT
