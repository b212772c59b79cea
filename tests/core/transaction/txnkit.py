"""Helpers of the transaction tests: message builders, a recording TU, a recording wire."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sipline.sip import Request, Response, make_response, parse_message
from sipline.transaction import FakeClock


def request(
    method: str = "INVITE",
    *,
    branch: str | None = "z9hG4bK-b1",
    host: str = "10.0.0.1",
    port: int | None = 5060,
    ruri: str = "sip:bob@example.com",
    from_tag: str | None = "a1",
    to_tag: str | None = None,
    call_id: str = "call-1@10.0.0.1",
    cseq: int = 1,
    cseq_method: str | None = None,
    routes: Iterable[str] = (),
    extra: Iterable[str] = (),
    more_vias: Iterable[str] = (),
) -> Request:
    """A parsed request; ``branch=None`` gives an RFC 2543 style Via without a branch."""
    hp = host if port is None else f"{host}:{port}"
    via = f"SIP/2.0/UDP {hp}" + ("" if branch is None else f";branch={branch}")
    lines = [f"{method} {ruri} SIP/2.0", f"Via: {via}"]
    lines += [f"Via: {v}" for v in more_vias]
    lines += [f"Route: {r}" for r in routes]
    lines += [
        "Max-Forwards: 70",
        "From: Alice <sip:alice@example.com>" + ("" if from_tag is None else f";tag={from_tag}"),
        "To: Bob <sip:bob@example.com>" + ("" if to_tag is None else f";tag={to_tag}"),
        f"Call-ID: {call_id}",
        f"CSeq: {cseq} {cseq_method or method}",
        "Contact: <sip:alice@10.0.0.1:5060>",
        *extra,
        "Content-Length: 0",
        "",
        "",
    ]
    msg = parse_message("\r\n".join(lines).encode())
    assert isinstance(msg, Request)
    return msg


def reply(req: Request, status: int, to_tag: str | None = "b1") -> Response:
    """A response to ``req`` as the next hop would send it (parsed from its bytes)."""
    resp = parse_message(make_response(req, status, to_tag=to_tag).to_bytes())
    assert isinstance(resp, Response)
    return resp


def ack_for(invite: Request, response: Response) -> Request:
    """The ACK an RFC 3261 UAC sends for a non-2xx final (same branch as the INVITE)."""
    from sipline.sip.requests import make_ack

    return parse_message(make_ack(invite, response).to_bytes())  # type: ignore[return-value]


class Wire:
    """A ``send`` callable that records what was sent and when; ``fail`` makes it fail."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.sent: list[tuple[float, bytes]] = []
        self.fail = False
        self.attempts = 0

    def __call__(self, data: bytes) -> bool:
        self.attempts += 1
        if self.fail:
            return False
        self.sent.append((self.clock.time(), data))
        return True

    @property
    def times(self) -> list[float]:
        return [t for t, _ in self.sent]

    @property
    def messages(self) -> list[Request | Response]:
        return [parse_message(d) for _, d in self.sent]

    def first_lines(self) -> list[str]:
        return [d.split(b"\r\n", 1)[0].decode() for _, d in self.sent]

    def clear(self) -> None:
        self.sent.clear()


class Recorder:
    """A transaction user that records every callback as a tuple."""

    def __init__(self) -> None:
        self.events: list[tuple[Any, ...]] = []

    def on_terminated(self, txn: Any) -> None:
        self.events.append(("terminated",))

    def on_transport_error(self, txn: Any) -> None:
        self.events.append(("transport_error",))

    def on_ack_timeout(self, txn: Any) -> None:
        self.events.append(("ack_timeout",))

    def on_timeout(self, txn: Any) -> None:
        self.events.append(("timeout",))

    def on_response(self, txn: Any, response: Response) -> None:
        self.events.append(("response", response.status))

    @property
    def names(self) -> list[str]:
        return [e[0] for e in self.events]


class AckRecorder(Recorder):
    """A TU that also takes the ACKs of 2xx responses and lifetime reports."""

    def on_ack(self, txn: Any, ack: Request) -> None:
        self.events.append(("ack", ack.method))

    def on_lifetime_expired(self, txn: Any) -> None:
        self.events.append(("lifetime_expired",))
