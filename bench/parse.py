"""Micro benchmark of the SIP message layer (prints figures, asserts nothing).

    python bench/parse.py [N]

Full loop per message: parse a typical 12-header INVITE with an SDP body, read
top_via/from_/to/call_id/cseq, push a Via, to_bytes(). Also: parse only, parse of a 200 OK,
and make_response() of a stateless 100/404.
"""

from __future__ import annotations

import sys
import time

from sipline.sip import make_response, parse_message

SDP = (
    b"v=0\r\n"
    b"o=alice 2890844526 2890844526 IN IP4 pc33.atlanta.example.com\r\n"
    b"s=-\r\n"
    b"c=IN IP4 192.0.2.101\r\n"
    b"t=0 0\r\n"
    b"m=audio 49172 RTP/AVP 0 8 101\r\n"
    b"a=rtpmap:0 PCMU/8000\r\n"
    b"a=rtpmap:8 PCMA/8000\r\n"
    b"a=rtpmap:101 telephone-event/8000\r\n"
)

INVITE = (
    b"INVITE sip:bob@biloxi.example.com SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP pc33.atlanta.example.com:5060;branch=z9hG4bK776asdhds;rport\r\n"
    b"Max-Forwards: 70\r\n"
    b"To: Bob <sip:bob@biloxi.example.com>\r\n"
    b"From: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\n"
    b"Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n"
    b"CSeq: 314159 INVITE\r\n"
    b"Contact: <sip:alice@pc33.atlanta.example.com>\r\n"
    b"Allow: INVITE, ACK, CANCEL, OPTIONS, BYE, REFER, NOTIFY, MESSAGE, SUBSCRIBE, INFO\r\n"
    b"Supported: replaces, timer\r\n"
    b"User-Agent: sipline-bench/1.0\r\n"
    b"Content-Type: application/sdp\r\n"
    b"Content-Length: " + str(len(SDP)).encode() + b"\r\n"
    b"\r\n" + SDP
)

OK200 = (
    b"SIP/2.0 200 OK\r\n"
    b"Via: SIP/2.0/UDP proxy.biloxi.example.com:5060;branch=z9hG4bKnashds8;received=192.0.2.3\r\n"
    b"Via: SIP/2.0/UDP pc33.atlanta.example.com:5060;branch=z9hG4bK776asdhds;rport=5060\r\n"
    b"To: Bob <sip:bob@biloxi.example.com>;tag=a6c85cf\r\n"
    b"From: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\n"
    b"Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n"
    b"CSeq: 314159 INVITE\r\n"
    b"Contact: <sip:bob@192.0.2.4>\r\n"
    b"Content-Type: application/sdp\r\n"
    b"Content-Length: " + str(len(SDP)).encode() + b"\r\n"
    b"\r\n" + SDP
)

NEW_VIA = "SIP/2.0/UDP proxy.example.net:5060;branch=z9hG4bK.proxy.0001"


def full_loop(n: int) -> float:
    data = INVITE
    t0 = time.perf_counter()
    for _ in range(n):
        m = parse_message(data)
        m.top_via
        m.from_
        m.to
        m.call_id
        m.cseq
        m.push_via(NEW_VIA)
        m.to_bytes()
    return time.perf_counter() - t0


def parse_only(n: int, data: bytes) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        parse_message(data)
    return time.perf_counter() - t0


def stateless_reply(n: int) -> float:
    req = parse_message(INVITE)
    t0 = time.perf_counter()
    for _ in range(n):
        make_response(req, 404, to_tag="abc123").to_bytes()
    return time.perf_counter() - t0


def report(label: str, n: int, seconds: float) -> None:
    print(f"{label:38} {n / seconds:>10,.0f} msg/s  {seconds / n * 1e6:7.2f} µs/msg")


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    # Warm up (name caches, regex compilation).
    full_loop(1000)
    print(f"sipline.sip micro benchmark, N={n}, INVITE {len(INVITE)} bytes, one core")
    report("full loop (parse+read+push_via+bytes)", n, min(full_loop(n) for _ in range(3)))
    report("parse only: INVITE", n, min(parse_only(n, INVITE) for _ in range(3)))
    report("parse only: 200 OK", n, min(parse_only(n, OK200) for _ in range(3)))
    report("make_response 404 + to_bytes", n, min(stateless_reply(n) for _ in range(3)))


if __name__ == "__main__":
    main()
