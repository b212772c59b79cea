"""The management interface (MI): JSON-RPC 2.0 over HTTP (``POST /mi``) and a UNIX
socket, the core's commands, Prometheus metrics at ``GET /metrics``, and the
``sipline mi`` client. See docs/mi.md.

Importing this package is cheap: the listeners and the client load on demand.
"""

from __future__ import annotations

from typing import Any

from .jsonrpc import (
    INTERNAL_ERROR,
    INVALID_PARAMS,
    INVALID_REQUEST,
    METHOD_NOT_FOUND,
    PARSE_ERROR,
    SERVER_ERROR,
    Command,
    CommandTable,
    Dispatcher,
    MIError,
    Param,
)


def __getattr__(name: str) -> Any:
    if name in ("ManagementInterface", "socket_path"):
        from . import service

        return getattr(service, name)
    raise AttributeError(f"module 'sipline.mi' has no attribute {name!r}")


__all__ = [
    "INTERNAL_ERROR", "INVALID_PARAMS", "INVALID_REQUEST", "METHOD_NOT_FOUND", "PARSE_ERROR",
    "SERVER_ERROR", "Command", "CommandTable", "Dispatcher", "MIError", "ManagementInterface",
    "Param", "socket_path",
]
