"""Requests derived from other messages: the transaction ACK and CANCEL (RFC 3261 §17.1.1.3,
§9.1).

Pure functions, no I/O. The text is assembled from the raw header values of the original
messages (so tags, parameters and URIs are copied octet for octet, which is what "equal" means
to the next hop's matching code) and then parsed, so the result is a normal, validated
:class:`Request` whose ``to_bytes()`` is free.
"""

from __future__ import annotations

from .headers import split_comma
from .message import Request, Response, SipMessage, parse_message

__all__ = ["make_ack", "make_cancel"]

#: Max-Forwards of the requests built here (RFC 3261 §8.1.1.6 recommends 70).
MAX_FORWARDS = 70


def _top_via_text(request: SipMessage) -> str:
    """The first Via value exactly as received (a Via line may hold several values)."""
    vias = request.get_all("via")
    if not vias:
        raise ValueError("the request has no Via header")
    first = vias[0]
    if "," in first:
        first = split_comma(first, what="Via")[0]
    return first


def _required(msg: SipMessage, name: str) -> str:
    value = msg.get(name)
    if value is None:
        raise ValueError(f"the message has no {name} header")
    return value


def _build(method: str, request: Request, to: str) -> Request:
    lines = [
        f"{method} {request.raw_uri} SIP/2.0",
        "Via: " + _top_via_text(request),
    ]
    # Route values are copied so that downstream stateless proxies route this request the
    # same way as the original (§17.1.1.3, §9.1).
    lines.extend("Route: " + route for route in request.get_all("route"))
    lines += [
        f"Max-Forwards: {MAX_FORWARDS}",
        "From: " + _required(request, "From"),
        "To: " + to,
        "Call-ID: " + request.call_id,
        f"CSeq: {request.cseq.seq} {method}",
        "Content-Length: 0",
        "",
        "",
    ]
    msg = parse_message("\r\n".join(lines).encode("latin-1"))
    assert isinstance(msg, Request)
    return msg


def make_ack(invite: Request, response: Response) -> Request:
    """The ACK a client transaction sends for a non-2xx final response (RFC 3261 §17.1.1.3).

    Request-URI, Call-ID and From come from the INVITE as sent; To comes from the response
    (so it carries the To tag of the UAS or proxy that answered); the single Via is the
    INVITE's top Via (same branch: the ACK belongs to the INVITE transaction); CSeq keeps the
    INVITE's number with method ACK; the INVITE's Route headers are copied; no body.

    An ACK for a 2xx is not built here: it is a transaction of its own, built by the UAC core
    from the dialog (§13.2.2.4).

    :raises ValueError: if ``invite`` is not an INVITE, ``response`` is not a 300-699 final
        response, or a header the ACK needs is missing.
    """
    if invite.method != "INVITE":
        raise ValueError(f"an ACK acknowledges an INVITE, not a {invite.method}")
    if response.status < 300:
        raise ValueError(
            f"the transaction ACKs only 300-699 responses, not {response.status}"
            " (the ACK for a 2xx belongs to the UAC core)"
        )
    return _build("ACK", invite, _required(response, "To"))


def make_cancel(request: Request) -> Request:
    """A CANCEL for ``request`` (RFC 3261 §9.1).

    Request-URI, Call-ID, From, To (as in the request: no tag is added) and the CSeq number
    are those of the request, with CSeq method CANCEL; the single Via is the request's top Via
    (same branch, so the next hop matches it to the request's server transaction); the
    request's Route headers are copied.

    :raises ValueError: for an ACK or CANCEL (which can never be cancelled), or when a header
        the CANCEL needs is missing.
    """
    if request.method in ("ACK", "CANCEL"):
        raise ValueError(f"a {request.method} cannot be cancelled")
    return _build("CANCEL", request, _required(request, "To"))
