"""Transports: UDP (asyncio-dgram) and TCP with stream framing."""

from sipline.transport.base import (
    MessageHandler,
    Source,
    Transport,
    format_hostport,
    unbracket,
    via_destination,
)
from sipline.transport.tcp import TcpTransport
from sipline.transport.udp import UdpTransport

__all__ = [
    "MessageHandler",
    "Source",
    "TcpTransport",
    "Transport",
    "UdpTransport",
    "format_hostport",
    "unbracket",
    "via_destination",
]
