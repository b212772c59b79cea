"""StreamFramer: Content-Length framing for TCP/TLS, keep-alives, limits."""

from __future__ import annotations

import pytest
from sip_samples import BASIC_200, BASIC_INVITE, INVITE_SDP
from sipline.sip import KEEPALIVE_PING, SipParseError, StreamFramer, parse_message


def test_whole_messages_in_one_chunk() -> None:
    f = StreamFramer()
    assert f.feed(BASIC_INVITE + BASIC_200) == [BASIC_INVITE, BASIC_200]
    assert f.buffered == 0


def test_byte_by_byte() -> None:
    f = StreamFramer()
    out: list[bytes] = []
    for i in range(len(BASIC_INVITE)):
        out += f.feed(BASIC_INVITE[i : i + 1])
    assert out == [BASIC_INVITE]
    assert parse_message(out[0], stream=True).body == INVITE_SDP


def test_partial_body_stays_buffered() -> None:
    f = StreamFramer()
    assert f.feed(BASIC_INVITE[:-10]) == []
    assert f.buffered == len(BASIC_INVITE) - 10
    assert f.feed(BASIC_INVITE[-10:] + BASIC_200[:5]) == [BASIC_INVITE]
    assert f.feed(BASIC_200[5:]) == [BASIC_200]


def test_keepalives() -> None:
    f = StreamFramer()
    assert f.feed(b"\r\n\r\n") == [KEEPALIVE_PING]
    assert f.feed(b"\r\n") == []  # maybe the start of a ping
    assert f.feed(b"\r\n") == [KEEPALIVE_PING]
    # A lone CRLF between messages is skipped.
    assert f.feed(b"\r\n" + BASIC_200) == [BASIC_200]
    assert f.feed(BASIC_200 + b"\r\n\r\n" + BASIC_200) == [BASIC_200, KEEPALIVE_PING, BASIC_200]


def test_clerr_waits_for_more() -> None:
    data = BASIC_INVITE.replace(b"Content-Length: " + str(len(INVITE_SDP)).encode(),
                                b"Content-Length: 9999")
    f = StreamFramer()
    assert f.feed(data) == []
    assert f.buffered == len(data)


@pytest.mark.parametrize(
    ("cl_line", "reason"),
    [
        (b"Content-Length: -999", "Content-Length"),
        (b"Content-Length: five", "Content-Length"),
        (b"Content-Length: 99999999999999999999999", "Content-Length"),
        (b"X-Nothing: 0", "Missing Content-Length on stream transport"),
        (b"Content-Length: 3\r\nl: 5", "Conflicting Content-Length"),
    ],
)
def test_framing_errors_are_fatal(cl_line: bytes, reason: str) -> None:
    data = BASIC_INVITE.replace(b"Content-Length: " + str(len(INVITE_SDP)).encode(), cl_line)
    f = StreamFramer()
    with pytest.raises(SipParseError) as ei:
        f.feed(data)
    assert reason in ei.value.reason
    with pytest.raises(SipParseError):
        f.feed(BASIC_200)  # unusable afterwards: the transport closes the connection


def test_compact_and_odd_case_content_length() -> None:
    for line in (b"l: 145", b"L:145", b"content-LENGTH :  145"):
        data = BASIC_INVITE.replace(b"Content-Length: " + str(len(INVITE_SDP)).encode(),
                                    line.replace(b"145", str(len(INVITE_SDP)).encode()))
        assert StreamFramer().feed(data) == [data]


def test_size_limits() -> None:
    f = StreamFramer(max_size=200)
    with pytest.raises(SipParseError) as ei:
        f.feed(BASIC_INVITE)
    assert ei.value.status == 513
    f = StreamFramer(max_size=100)
    with pytest.raises(SipParseError) as ei:
        f.feed(b"INVITE sip:x SIP/2.0\r\nX: " + b"a" * 200)  # no end of headers in sight
    assert ei.value.status == 513


def test_bare_lf_header_end() -> None:
    data = BASIC_200.replace(b"\r\n", b"\n")
    assert StreamFramer().feed(data) == [data]


def test_folded_line_is_not_a_content_length() -> None:
    data = BASIC_200.replace(b"Contact: <sip:bob@192.0.2.4>",
                             b"Subject: a folded\r\n l: 99 is text")
    assert StreamFramer().feed(data) == [data]
    assert parse_message(data, stream=True).get("Subject") == "a folded l: 99 is text"


def test_messages_before_a_framing_error_are_delivered() -> None:
    bad = b"C\r\n\r\n"  # the tail of RFC 4475 dblreq: no Content-Length
    f = StreamFramer()
    assert f.feed(BASIC_INVITE + BASIC_200 + bad) == [BASIC_INVITE, BASIC_200]
    assert f.error is not None and "Missing Content-Length" in f.error.reason
    with pytest.raises(SipParseError, match="Missing Content-Length"):
        f.feed(b"")
    with pytest.raises(SipParseError):
        f.feed(BASIC_200)
