"""What every transport shares: the source of a message and the transport interface."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from typing import Any, Protocol


class Source:
    """Where a message came from and how to answer it.

    ``remote`` and ``local`` are ``(host, port)`` with IPv6 hosts unbracketed.
    ``conn`` is the stream connection a TCP message arrived on (None for UDP),
    so that responses reuse it (RFC 3261 §18.2.2).
    """

    __slots__ = ("proto", "remote", "local", "transport", "conn")

    def __init__(
        self,
        proto: str,
        remote: tuple[str, int],
        local: tuple[str, int],
        transport: Transport,
        conn: Any = None,
    ) -> None:
        self.proto = proto
        self.remote = remote
        self.local = local
        self.transport = transport
        self.conn = conn

    @property
    def reliable(self) -> bool:
        return self.proto != "udp"

    def __repr__(self) -> str:
        return f"<Source {self.proto} {format_hostport(*self.remote)}>"


def format_hostport(host: str, port: int | None) -> str:
    """``host:port`` with IPv6 addresses bracketed."""
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return host if port is None else f"{host}:{port}"


def via_destination(
    via: Any, *, reliable: bool = False, source_ip: str | None = None
) -> tuple[str, int]:
    """Where a response goes per the Via it is addressed to (RFC 3261 §18.2.2, RFC 3581).

    ``received`` wins over the sent-by host; over UDP a numeric ``maddr`` wins
    over both and ``rport`` (with a value) gives the port. ``source_ip`` stands
    in for ``received`` when ``rport`` is there without it (the request's own
    source, for a server answering it). The host may still be a name.
    """
    params = via.params
    received = params.get("received")
    host = unbracket(received or via.host)
    port = via.port or 5060
    if reliable:
        return (host, port)
    maddr = params.get("maddr")
    if maddr and _is_ip(unbracket(maddr)):
        return (unbracket(maddr), port)
    rport = params.get("rport")
    if rport and rport.isdigit():
        return (unbracket(received) if received else (source_ip or host), int(rport))
    return (host, port)


def unbracket(host: str) -> str:
    """``[::1]`` -> ``::1``; anything else unchanged."""
    return host[1:-1] if host.startswith("[") and host.endswith("]") else host


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


#: Called by a transport for every complete message: ``(data, source)``.
MessageHandler = Callable[[bytes, Source], None]


class Transport(Protocol):
    """The interface the server uses to send through a listener."""

    proto: str
    local: tuple[str, int]

    def send(self, data: bytes, addr: tuple[str, int], conn: Any = None) -> bool:
        """Send ``data`` to ``addr`` (over ``conn`` for streams when still open).

        :returns: False when the message could not be handed to the OS (the
            caller counts it as a transport error); never raises for network errors.
        """
        ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...
