"""Where a request goes next: URI -> (transport, address, port).

RFC 3263 is not implemented yet: numeric hosts are used as they are and host
names go through the OS resolver (asynchronously, off the event loop), taking
the first address; the port defaults to 5060 (5061 for sips).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from typing import Any

from sipline.sip import SipParseError, SipURI, parse_uri


class NextHop:
    """A resolved destination: how and where to send. Callable as a transaction's send."""

    __slots__ = ("proto", "host", "port", "transport", "addr")

    def __init__(self, proto: str, host: str, port: int, transport: Any = None) -> None:
        self.proto = proto
        self.host = host
        self.port = port
        self.transport = transport
        self.addr = (host, port)

    def send(self, data: bytes) -> bool:
        return bool(self.transport is not None and self.transport.send(data, self.addr))

    def __repr__(self) -> str:
        return f"<NextHop {self.proto}:{self.host}:{self.port}>"


def target_uri(target: Any) -> SipURI:
    """Parse ``target`` (str or URI) into a SipURI; ValueError for other schemes."""
    uri = parse_uri(target) if isinstance(target, str) else target
    if not isinstance(uri, SipURI):
        raise ValueError(f"cannot route to {uri}: not a sip/sips URI")
    return uri


_LITERALS: dict[str, str | None] = {}
_LITERALS_MAX = 4096


def ip_literal(host: str) -> str | None:
    """The normalised IP address ``host`` spells, or None for a name (memoised)."""
    try:
        return _LITERALS[host]
    except KeyError:
        pass
    h = host[1:-1] if host.startswith("[") else host
    try:
        value: str | None = str(ipaddress.ip_address(h))
    except ValueError:
        value = None
    if len(_LITERALS) >= _LITERALS_MAX:
        _LITERALS.clear()  # bounded: a flood of distinct hosts only costs re-parsing
    _LITERALS[host] = value
    return value


def resolve_target(uri: SipURI) -> tuple[str, str | None, int, str]:
    """The transport, numeric address (None: needs DNS), port and host of ``uri``.

    ``maddr`` overrides the host (RFC 3261 §19.1.1); ``transport`` picks TCP or UDP.
    """
    proto = (uri.params.get("transport") or ("tcp" if uri.scheme == "sips" else "udp")).lower()
    host = uri.params.get("maddr") or uri.host
    port = uri.port or (5061 if uri.scheme == "sips" else 5060)
    return proto, ip_literal(host), port, host


async def lookup_host(host: str, port: int, proto: str) -> str | None:
    """Resolve a host name with the OS resolver, off the event loop."""
    loop = asyncio.get_running_loop()
    kind = socket.SOCK_DGRAM if proto == "udp" else socket.SOCK_STREAM
    try:
        infos = await asyncio.wait_for(
            loop.getaddrinfo(host, port, type=kind), timeout=5.0
        )
    except (OSError, asyncio.TimeoutError, UnicodeError):
        return None
    for family, _, _, _, sockaddr in infos:
        if family in (socket.AF_INET, socket.AF_INET6):
            return str(sockaddr[0])
    return None


__all__ = ["NextHop", "SipParseError", "ip_literal", "lookup_host", "resolve_target", "target_uri"]
