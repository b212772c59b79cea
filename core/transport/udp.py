"""UDP listener built on asyncio-dgram.

Receiving goes through asyncio-dgram's stream (``await stream.recv()``).
Sending writes straight to the non-blocking socket we created: a UDP
``sendto`` never blocks for long, and doing it synchronously keeps the
per-message path free of coroutine round trips. A full socket buffer drops the
datagram, exactly as the network would; SIP retransmissions recover.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import Any

import asyncio_dgram

from sipline.transport.base import MessageHandler, Source

log = logging.getLogger("sipline.transport.udp")

SOCKET_BUFFER = 4 * 1024 * 1024
_SO_MEMINFO = getattr(socket, "SO_MEMINFO", 55)  # Linux >= 4.6; not exported by Python


class UdpTransport:
    """One bound UDP socket: a receive loop plus synchronous sends."""

    proto = "udp"

    def __init__(
        self,
        host: str,
        port: int,
        on_message: MessageHandler,
        *,
        reuse_port: bool = False,
    ) -> None:
        self.host = host
        self.port = port
        self.on_message = on_message
        self.reuse_port = reuse_port
        self.local: tuple[str, int] = (host, port)
        self.send_errors = 0
        self._sock: socket.socket | None = None
        self._stream: Any = None
        self._task: asyncio.Task[None] | None = None

    def _make_socket(self) -> socket.socket:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            if self.reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            for opt in (socket.SO_RCVBUF, socket.SO_SNDBUF):
                try:
                    sock.setsockopt(socket.SOL_SOCKET, opt, SOCKET_BUFFER)
                except OSError:
                    pass  # the kernel caps it; the default still works
            sock.bind((self.host, self.port))
            sock.setblocking(False)
        except BaseException:
            sock.close()
            raise
        return sock

    async def start(self) -> None:
        self._sock = self._make_socket()
        self.local = self._sock.getsockname()[:2]
        self.port = self.local[1]
        self._stream = await asyncio_dgram.from_socket(self._sock)
        self._task = asyncio.get_running_loop().create_task(self._receive_loop())

    async def _receive_loop(self) -> None:
        stream = self._stream
        on_message = self.on_message
        local = self.local
        while True:
            try:
                data, addr = await stream.recv()
            except asyncio_dgram.TransportClosed:
                return
            except OSError as exc:
                # ICMP errors of earlier sends surface here; they concern a
                # peer, not this socket.
                log.debug("udp %s: %s", local, exc)
                continue
            try:
                on_message(data, Source("udp", addr[:2], local, self))
            except Exception:  # never let one message stop the listener
                log.exception("udp %s: unhandled error processing a datagram from %s", local, addr)

    def backlog(self) -> tuple[int, int] | None:
        """``(bytes queued for reading, receive buffer size)`` of the socket, or None.

        Read from the kernel (Linux ``SO_MEMINFO``): how far the server is
        behind the datagrams that arrived, the signal for load shedding.
        """
        sock = self._sock
        if sock is None:
            return None
        try:
            info = sock.getsockopt(socket.SOL_SOCKET, _SO_MEMINFO, 36)
        except OSError:
            return None
        rmem_alloc, rcvbuf = int.from_bytes(info[0:4], "little"), int.from_bytes(info[4:8], "little")
        return rmem_alloc, rcvbuf

    def send(self, data: bytes, addr: tuple[str, int], conn: Any = None) -> bool:
        sock = self._sock
        if sock is None:
            return False
        try:
            sock.sendto(data, addr)
            return True
        except (OSError, ValueError, OverflowError) as exc:
            # unreachable, buffer full, an address of the wrong family...
            self.send_errors += 1
            log.debug("udp %s: send to %s failed: %s", self.local, addr, exc)
            return False

    async def stop(self) -> None:
        if self._stream is not None:
            self._stream.close()
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass
        self._sock = None
        self._stream = None
        self._task = None
