"""The management interface of one server: its command table and its listeners.

Runs in the server's event loop, in one process only (the single worker, or
worker 0 of ``[server] workers = N``): HTTP (``[mi] http``) and the UNIX socket
(``[mi] socket``). Both are asyncio servers, so a request is a task like any
other: SIP processing never waits for MI, and an ``async`` command is awaited
without blocking either.
"""

from __future__ import annotations

import ipaddress
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sipline.config import parse_hostport

from .commands import build_table
from .http import HttpListener
from .jsonrpc import Dispatcher
from .unix import UnixListener

if TYPE_CHECKING:
    from sipline.server import Server

log = logging.getLogger("sipline.mi")

SOCKET_NAME = "sipline-mi.sock"


def socket_path(config: Any) -> Path | None:
    """Where the MI socket of ``config`` is (None when it is switched off)."""
    value = config.mi.socket
    if value is False:
        return None
    return Path(value) if value is not None else config.data_dir / SOCKET_NAME


class ManagementInterface:
    """The MI of one server: ``start()`` binds the listeners, ``stop()`` closes them."""

    def __init__(self, server: Server) -> None:
        from sipline.server import StartupError

        self.server = server
        try:
            self.table = build_table(server)
        except ValueError as exc:
            raise StartupError(str(exc)) from exc
        self.dispatcher = Dispatcher(self.table)
        self.http: HttpListener | None = None
        self.unix: UnixListener | None = None

    async def start(self) -> None:
        """Bind what ``[mi]`` asks for; see :class:`~sipline.config.MIConfig` for failures."""
        from sipline.server import StartupError

        config = self.server.config
        settings = config.mi
        explicit = settings.model_fields_set
        if settings.http:
            host, port = parse_hostport(settings.http)
            listener = HttpListener(host, port, self.dispatcher, self.server.stats.prometheus,
                                    settings.token)
            try:
                await listener.start()
            except OSError as exc:
                message = f"cannot listen for MI on http {settings.http}: {exc.strerror or exc}"
                if "http" in explicit:
                    raise StartupError(message) from exc
                log.warning("%s ([mi] http: another address, or false for none)", message)
            else:
                self.http = listener
                if not ipaddress.ip_address(host).is_loopback and not settings.token:
                    log.warning("MI listens on %s without [mi] token: anyone who reaches it "
                                "can manage this server", settings.http)
                log.info("MI: JSON-RPC on http://%s/mi, metrics on /metrics",
                         _hostport(listener.address))
        path = socket_path(config)
        if path is not None:
            unix = UnixListener(path, self.dispatcher)
            try:
                await unix.start()
            except OSError as exc:
                message = f"cannot create the MI socket {path}: {exc.strerror or exc}"
                if "socket" in explicit:
                    await self.stop()
                    raise StartupError(message) from exc
                log.warning("%s ([mi] socket: another path, or false for none)", message)
            else:
                self.unix = unix
                log.info("MI: JSON-RPC on unix:%s", path)

    async def stop(self) -> None:
        for listener in (self.http, self.unix):
            if listener is not None:
                try:
                    await listener.stop()
                except Exception:
                    log.exception("error stopping an MI listener")
        self.http = self.unix = None

    async def call(self, method: str, params: Any = None) -> Any:
        """Run one command in-process (tests, embedding); returns the JSON-RPC response."""
        request: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "id": 1}
        if params is not None:
            request["params"] = params
        return await self.dispatcher.handle(request)


def _hostport(addr: tuple[str, int]) -> str:
    host, port = addr[:2]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


__all__ = ["SOCKET_NAME", "ManagementInterface", "socket_path"]
