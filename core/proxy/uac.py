"""Requests sipline originates itself (OpenSIPS ``tm``'s ``t_uac``): OPTIONS probes of the
load balancer, the BYEs the dialog module sends on timeout, NOTIFY, MESSAGE...

Non-INVITE only: an INVITE would need the ACK for its 2xx and a dialog, which is a B2BUA's
business. Each request gets its own client transaction (retransmissions, Timer F), runs
through the ``route_local`` stage before it leaves, and resolves to the final response: the
one received, or one generated locally as RFC 3261 §8.1.3.1 asks of a UAC (408 after Timer F,
503 after a transport error).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from sipline.proxy.nexthop import NextHop, lookup_host, resolve_target, target_uri
from sipline.sip import Request, Response, make_response, parse_message

if TYPE_CHECKING:
    from sipline.proxy.core import Proxy

MAGIC = "z9hG4bK"

#: Methods this module refuses: they are not standalone non-INVITE transactions.
_NOT_HERE = frozenset({"INVITE", "ACK", "CANCEL"})


class LocalRequestError(Exception):
    """A locally originated request could not be sent (nothing went on the wire)."""


def build_request(
    method: str,
    ruri: str,
    *,
    from_uri: str,
    to_uri: str | None = None,
    call_id: str | None = None,
    cseq: int = 1,
    from_tag: str | None = None,
    to_tag: str | None = None,
    headers: Iterable[tuple[str, str]] = (),
    body: bytes = b"",
) -> Request:
    """A new out-of-dialog (or, with ``to_tag``, in-dialog) request, without a Via.

    Call-ID and From tag are random unless given; Max-Forwards is 70. Route headers, if
    any, go in ``headers`` in order.

    :raises ValueError: for a malformed URI or header (the text is parsed like any
        received message).
    """
    from_tag = from_tag or os.urandom(6).hex()
    call_id = call_id or f"{os.urandom(10).hex()}@sipline"
    to = f"<{to_uri or ruri}>" + (f";tag={to_tag}" if to_tag else "")
    fields = [
        ("Max-Forwards", "70"),
        ("From", f"<{from_uri}>;tag={from_tag}"),
        ("To", to),
        ("Call-ID", call_id),
        ("CSeq", f"{cseq} {method}"),
        *headers,
    ]
    # Serialised and parsed back: the result is validated like any received request.
    draft = Request(method, ruri, fields, body)
    draft.push_via(f"SIP/2.0/UDP 0.0.0.0;branch={MAGIC}.draft")
    msg = parse_message(draft.to_bytes())
    if not isinstance(msg, Request):  # pragma: no cover - the start line says request
        raise ValueError("not a request")
    msg.pop_via()  # the real one is added when the request is sent
    return msg


class _Waiter:
    """Transaction user of one local request: resolves the future with the final response."""

    __slots__ = ("future", "request")

    def __init__(self, future: asyncio.Future[Response], request: Request) -> None:
        self.future = future
        self.request = request

    def _done(self, response: Response) -> None:
        if not self.future.done():
            self.future.set_result(response)

    def on_response(self, txn: Any, response: Response) -> None:
        if response.status >= 200:
            self._done(response)

    def on_timeout(self, txn: Any) -> None:
        self._done(make_response(self.request, 408, "Request Timeout"))

    def on_transport_error(self, txn: Any) -> None:
        self._done(make_response(self.request, 503, "Service Unavailable"))

    def on_terminated(self, txn: Any) -> None:
        # Terminated without a final response (server shutting down): still answer.
        self._done(make_response(self.request, 408, "Request Timeout"))

    def on_ack_timeout(self, txn: Any) -> None:  # pragma: no cover - INVITE only
        pass


class Uac:
    """Sends requests on behalf of sipline itself; one per proxy (``server.uac``)."""

    def __init__(self, proxy: Proxy) -> None:
        self.proxy = proxy
        self._ids = 0
        self._prefix = os.urandom(3).hex()

    async def send(
        self, request: Request, destination: str | None = None, *, timeout: float | None = None
    ) -> Response:
        """Send ``request`` in a new client transaction and return its final response.

        :param destination: a SIP URI of the next hop (OpenSIPS ``$du``); default: the
            first Route header when there is one, else the Request-URI.
        :param timeout: give up after this many seconds (shorter than Timer F, e.g. a
            probe's): the client transaction is abandoned, no more retransmissions, and
            the result is a local 408.
        :returns: the final response received, or a local 408 (no answer within Timer F)
            or 503 (transport error).
        :raises LocalRequestError: when the request cannot leave: an INVITE/ACK/CANCEL,
            an unroutable or unresolvable next hop, no listener for its transport, or a
            ``route_local`` hook that returned Drop.
        """
        if request.method in _NOT_HERE:
            raise LocalRequestError(f"sipline does not originate {request.method} requests")
        server = self.proxy.server
        try:
            if destination is not None:
                hop_uri = target_uri(destination)
            else:
                routes = request.routes
                hop_uri = target_uri(routes[0].uri if routes else request.uri)
            proto, addr, port, host = resolve_target(hop_uri)
        except ValueError as exc:
            raise LocalRequestError(f"cannot send {request.method}: {exc}") from exc
        if addr is None:
            addr = await lookup_host(host, port, proto)
            if addr is None:
                raise LocalRequestError(f"cannot send {request.method}: {host} does not resolve")
        transport = server.transport_for(proto, addr)
        if transport is None:
            raise LocalRequestError(
                f"cannot send {request.method} over {proto} to {addr}: no such listener"
            )
        self._ids += 1
        request.push_via(
            f"SIP/2.0/{proto.upper()} {server.sent_by(transport)}"
            f";branch={MAGIC}.l{self._prefix}{self._ids:x}"
        )
        if not server.run_route_local(request, (proto, addr, port)):
            raise LocalRequestError(f"{request.method} to {hop_uri} dropped by route_local")
        future: asyncio.Future[Response] = asyncio.get_running_loop().create_future()
        hop = NextHop(proto, addr, port, transport)
        txn = self.proxy.layer.create_client(request, hop.send, proto != "udp",
                                             _Waiter(future, request))
        txn.start()
        if timeout is None:
            return await future
        try:
            return await asyncio.wait_for(asyncio.shield(future), timeout)
        except asyncio.TimeoutError:
            txn.terminate()  # no more retransmissions; a late answer is a stray
            return make_response(request, 408, "Request Timeout")


__all__ = ["LocalRequestError", "Uac", "build_request"]
