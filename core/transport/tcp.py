"""TCP listener and connections with SIP stream framing (RFC 3261 §18.3).

Connections are kept in a table by remote address so that responses and later
requests reuse them (§18.2.2, RFC 5923 spirit). Limits: a maximum number of
simultaneous connections (new ones beyond it are closed at once), an idle
timeout swept periodically, and the framer's maximum message size.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import Any

from sipline.sip import SipParseError, StreamFramer
from sipline.transport.base import MessageHandler, Source

log = logging.getLogger("sipline.transport.tcp")

PONG = b"\r\n"
KEEPALIVE_PING = b"\r\n\r\n"


class TcpConnection(asyncio.Protocol):
    """One TCP connection: frames the byte stream into SIP messages."""

    __slots__ = ("owner", "transport", "remote", "framer", "last_activity", "closed")

    def __init__(self, owner: TcpTransport, remote: tuple[str, int] | None = None) -> None:
        self.owner = owner
        self.transport: asyncio.Transport | None = None
        self.remote: tuple[str, int] = remote or ("", 0)
        self.framer = StreamFramer(max_size=owner.max_message_size)
        self.last_activity = 0.0
        self.closed = False

    # -- asyncio.Protocol ----------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is not a subclass
        peer = transport.get_extra_info("peername")
        if peer:
            self.remote = (peer[0], peer[1])
        self.last_activity = self.owner.loop.time()
        if not self.owner.adopt(self):
            transport.abort()  # type: ignore[attr-defined]  # a stream transport has abort()
            self.closed = True

    def data_received(self, data: bytes) -> None:
        self.last_activity = self.owner.loop.time()
        try:
            frames = self.framer.feed(data)
        except SipParseError as exc:
            # The framing is lost (bad or missing Content-Length, oversize):
            # nothing after this point can be trusted, so close.
            log.info("tcp %s: closing connection: %s", self.remote, exc.reason)
            self.close()
            return
        owner = self.owner
        for frame in frames:
            if frame == KEEPALIVE_PING:
                self.write(PONG)
                continue
            try:
                owner.on_message(frame, Source("tcp", self.remote, owner.local, owner, self))
            except Exception:
                log.exception("tcp %s: unhandled error processing a message", self.remote)
            if self.closed:
                return
        error = self.framer.error
        if error is not None:
            # The messages before the broken one were handled; the rest of
            # the stream cannot be framed.
            log.info("tcp %s: closing connection: %s", self.remote, error.reason)
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.owner.forget(self)

    # -- API -------------------------------------------------------------------
    def write(self, data: bytes) -> bool:
        if self.closed or self.transport is None or self.transport.is_closing():
            return False
        self.transport.write(data)
        self.last_activity = self.owner.loop.time()
        return True

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            if self.transport is not None:
                self.transport.close()
            self.owner.forget(self)


class TcpTransport:
    """A TCP listener plus the table of open connections."""

    proto = "tcp"

    def __init__(
        self,
        host: str,
        port: int,
        on_message: MessageHandler,
        *,
        reuse_port: bool = False,
        max_connections: int = 4096,
        idle_timeout: float = 300.0,
        max_message_size: int = 65535,
    ) -> None:
        self.host = host
        self.port = port
        self.on_message = on_message
        self.reuse_port = reuse_port
        self.max_connections = max_connections
        self.idle_timeout = idle_timeout
        self.max_message_size = max_message_size
        self.local: tuple[str, int] = (host, port)
        self.connections: dict[tuple[str, int], TcpConnection] = {}
        self.rejected = 0
        self.loop: asyncio.AbstractEventLoop = None  # type: ignore[assignment]
        self._server: asyncio.base_events.Server | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self._pending: set[asyncio.Task[Any]] = set()

    async def start(self) -> None:
        self.loop = asyncio.get_running_loop()
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            if self.reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind((self.host, self.port))
            sock.listen(1024)
            sock.setblocking(False)
        except BaseException:
            sock.close()
            raise
        self.local = sock.getsockname()[:2]
        self.port = self.local[1]
        self._server = await self.loop.create_server(lambda: TcpConnection(self), sock=sock)
        self._sweeper = self.loop.create_task(self._sweep_idle())

    def adopt(self, conn: TcpConnection) -> bool:
        """Register a new connection; False when the connection limit is reached."""
        if len(self.connections) >= self.max_connections:
            self.rejected += 1
            log.warning(
                "tcp %s: connection limit %d reached, refusing %s",
                self.local,
                self.max_connections,
                conn.remote,
            )
            return False
        old = self.connections.get(conn.remote)
        if old is not None and old is not conn:
            old.close()
        self.connections[conn.remote] = conn
        return True

    def forget(self, conn: TcpConnection) -> None:
        if self.connections.get(conn.remote) is conn:
            del self.connections[conn.remote]

    async def _sweep_idle(self) -> None:
        interval = min(self.idle_timeout / 2, 5.0)
        while True:
            await asyncio.sleep(interval)
            deadline = self.loop.time() - self.idle_timeout
            for conn in [c for c in self.connections.values() if c.last_activity < deadline]:
                log.debug("tcp %s: closing idle connection %s", self.local, conn.remote)
                conn.close()

    def send(self, data: bytes, addr: tuple[str, int], conn: Any = None) -> bool:
        """Send over ``conn`` if open, else over a connection to ``addr``.

        When no connection exists one is opened in the background
        (RFC 3261 §18.2.2: the server opens a connection to the response's
        destination); the message is written once it is established.
        """
        if conn is not None and not conn.closed:
            return bool(conn.write(data))
        existing = self.connections.get(addr)
        if existing is not None and not existing.closed:
            return existing.write(data)
        if self.loop is None or len(self.connections) >= self.max_connections:
            return False
        task = self.loop.create_task(self._connect_and_send(data, addr))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)
        return True

    async def _connect_and_send(self, data: bytes, addr: tuple[str, int]) -> None:
        try:
            _, conn = await asyncio.wait_for(
                self.loop.create_connection(lambda: TcpConnection(self, addr), addr[0], addr[1]),
                timeout=10,
            )
        except (OSError, asyncio.TimeoutError) as exc:
            log.info("tcp %s: cannot connect to %s: %s", self.local, addr, exc)
            return
        conn.write(data)

    async def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
        if self._server is not None:
            self._server.close()
        for conn in list(self.connections.values()):
            conn.close()
        for task in list(self._pending):
            task.cancel()
        if self._server is not None:
            try:
                await asyncio.wait_for(self._server.wait_closed(), timeout=2)
            except asyncio.TimeoutError:
                pass
        self._server = None
