"""The MI's HTTP listener: ``POST /mi`` (JSON-RPC) and ``GET /metrics`` (Prometheus).

A deliberately small HTTP/1.1 server on asyncio streams, in the SIP server's
own event loop: keep-alive, ``Content-Length`` bodies only, every size bounded
(request head, body, connections) and every read under a timeout, so a slow or
hostile client holds one task and nothing else. With ``[mi] token`` set, both
paths want ``Authorization: Bearer <token>``.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections.abc import Callable
from typing import Any

from .jsonrpc import Dispatcher
from .streams import close_clients

log = logging.getLogger("sipline.mi")

MAX_HEAD = 16 * 1024
MAX_HEADERS = 100
MAX_BODY = 1024 * 1024
MAX_CONNECTIONS = 64
READ_TIMEOUT = 30.0

_REASONS = {
    200: "OK", 204: "No Content", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found",
    405: "Method Not Allowed", 408: "Request Timeout", 411: "Length Required",
    413: "Content Too Large", 431: "Request Header Fields Too Large", 500: "Internal Server Error",
    501: "Not Implemented", 503: "Service Unavailable", 505: "HTTP Version Not Supported",
}


class _HttpError(Exception):
    def __init__(self, status: int, text: str, headers: tuple[tuple[str, str], ...] = ()) -> None:
        super().__init__(text)
        self.status = status
        self.text = text
        self.headers = headers


class HttpListener:
    """``POST /mi`` and ``GET /metrics`` on one TCP address."""

    def __init__(
        self,
        host: str,
        port: int,
        dispatcher: Dispatcher,
        metrics: Callable[[], tuple[bytes, str]],
        token: str | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.dispatcher = dispatcher
        self.metrics = metrics
        self._token = f"Bearer {token}".encode() if token else None
        self._server: asyncio.base_events.Server | None = None
        self._clients: dict[asyncio.Task[Any], asyncio.StreamWriter] = {}
        self.address: tuple[str, int] = (host, port)

    async def start(self) -> None:
        self._server = await asyncio.start_server(
            self._serve, self.host, self.port, limit=MAX_HEAD, reuse_address=True
        )
        self.address = self._server.sockets[0].getsockname()[:2]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        await close_clients(self._clients)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        try:
            if len(self._clients) >= MAX_CONNECTIONS:
                await _respond(writer, 503, b"too many MI connections\n", "text/plain",
                               close=True)
                return
            self._clients[task] = writer
            while await self._one(reader, writer):
                pass
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.TimeoutError):
            pass
        finally:
            self._clients.pop(task, None)
            writer.close()

    async def _one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """Serve one request; False when the connection is to be closed."""
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), READ_TIMEOUT)
        except asyncio.IncompleteReadError as exc:
            if exc.partial.strip():
                await _respond(writer, 400, b"incomplete request\n", "text/plain", close=True)
            return False
        except asyncio.LimitOverrunError:
            await _respond(writer, 431, b"request head larger than 16 KiB\n", "text/plain",
                           close=True)
            return False
        try:
            method, path, keep_alive, headers = _parse_head(head)
            body = b""
            if method == "POST":
                length = _content_length(headers)
                body = await asyncio.wait_for(reader.readexactly(length), READ_TIMEOUT)
            status, payload, ctype, extra = await self._route(method, path, headers, body)
        except _HttpError as exc:
            await _respond(writer, exc.status, exc.text.encode() + b"\n", "text/plain",
                           exc.headers, close=True)
            return False
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.TimeoutError):
            raise
        except Exception:
            log.exception("MI HTTP request %r failed", head.split(b"\r\n", 1)[0])
            await _respond(writer, 500, b"internal error (see the server log)\n", "text/plain",
                           close=True)
            return False
        await _respond(writer, status, payload, ctype, extra, close=not keep_alive,
                       head_only=method == "HEAD")
        return keep_alive

    async def _route(
        self, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, bytes, str, tuple[tuple[str, str], ...]]:
        if path not in ("/mi", "/metrics"):
            raise _HttpError(404, f"no such path {path!r}: POST /mi (JSON-RPC) or GET /metrics")
        if self._token is not None:
            given = headers.get("authorization", "").encode("latin-1", "replace")
            if not hmac.compare_digest(given, self._token):
                raise _HttpError(401, "a bearer token is required ([mi] token)",
                                 (("WWW-Authenticate", 'Bearer realm="sipline"'),))
        if path == "/metrics":
            if method not in ("GET", "HEAD"):
                raise _HttpError(405, "use GET /metrics", (("Allow", "GET, HEAD"),))
            data, ctype = self.metrics()
            return 200, data, ctype, ()
        if method != "POST":
            raise _HttpError(405, "use POST /mi with a JSON-RPC 2.0 body", (("Allow", "POST"),))
        answer = await self.dispatcher.handle_bytes(body)
        if answer is None:
            return 204, b"", "", ()
        return 200, answer, "application/json", ()


def _parse_head(head: bytes) -> tuple[str, str, bool, dict[str, str]]:
    lines = head[:-4].split(b"\r\n")
    try:
        method, target, version = lines[0].decode("ascii").split(" ")
    except (UnicodeDecodeError, ValueError):
        raise _HttpError(400, "malformed request line") from None
    if not version.startswith("HTTP/1."):
        raise _HttpError(505, "HTTP/1.0 or HTTP/1.1 only")
    if len(lines) - 1 > MAX_HEADERS:
        raise _HttpError(431, f"more than {MAX_HEADERS} header fields")
    headers: dict[str, str] = {}
    for raw in lines[1:]:
        name, sep, value = raw.decode("latin-1").partition(":")
        if not sep or not name or name != name.strip():
            raise _HttpError(400, "malformed header field")
        key = name.lower()
        if key in headers and key in ("content-length", "authorization"):
            raise _HttpError(400, f"duplicate {name} header")
        headers[key] = value.strip()
    connection = headers.get("connection", "").lower()
    if version == "HTTP/1.0":
        keep_alive = "keep-alive" in connection
    else:
        keep_alive = "close" not in connection
    path = target.split("?", 1)[0]
    return method.upper(), path, keep_alive, headers


def _content_length(headers: dict[str, str]) -> int:
    if "transfer-encoding" in headers:
        raise _HttpError(501, "chunked request bodies are not supported: send Content-Length")
    value = headers.get("content-length")
    if value is None:
        raise _HttpError(411, "a POST needs a Content-Length")
    if not value.isdigit():
        raise _HttpError(400, "Content-Length must be a number")
    length = int(value)
    if length > MAX_BODY:
        raise _HttpError(413, f"request body larger than {MAX_BODY} bytes")
    return length


async def _respond(
    writer: asyncio.StreamWriter,
    status: int,
    body: bytes,
    content_type: str,
    headers: tuple[tuple[str, str], ...] = (),
    *,
    close: bool = False,
    head_only: bool = False,
) -> None:
    lines = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Unknown')}"]
    if content_type and status != 204:
        lines.append(f"Content-Type: {content_type}")
    if status != 204:
        lines.append(f"Content-Length: {len(body)}")
    lines.extend(f"{name}: {value}" for name, value in headers)
    lines.append("Connection: close" if close else "Connection: keep-alive")
    data = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    if not head_only and status != 204:
        data += body
    writer.write(data)
    try:
        await asyncio.wait_for(writer.drain(), READ_TIMEOUT)
    except (ConnectionError, asyncio.TimeoutError):
        raise ConnectionResetError("MI client gone") from None


__all__ = ["MAX_BODY", "HttpListener"]
