"""Per-message contexts handed to the route stages.

A context is the one argument of every stage hook. It carries the message,
where it came from, the server, and the state that OpenSIPS keeps in flags and
AVPs (``flags``, ``vars``). Plugins extend it through ``register_script_api``:
``ctx.registrar`` is created on first access by the factory the registrar
plugin registered.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from sipline.routing.actions import DROP, Drop, Redirect, Reply

if TYPE_CHECKING:
    from sipline.server import Server
    from sipline.sip import Request, Response, SipParseError
    from sipline.transport.base import Source


class _ScriptApiMixin:
    """Resolves ``ctx.<name>`` through the script APIs plugins registered."""

    __slots__ = ()
    server: Server

    def __getattr__(self, name: str) -> Any:
        # Only called when normal lookup failed, so real attributes stay fast.
        if name.startswith("_"):
            raise AttributeError(name)
        try:
            cache = self._api_cache  # type: ignore[attr-defined]
        except AttributeError:
            cache = self._api_cache = {}  # type: ignore[attr-defined]
        if name in cache:
            return cache[name]
        factory = self.server.script_api.get(name)
        if factory is None:
            raise AttributeError(
                f"ctx has no attribute {name!r}; no installed plugin registers a script API "
                f"of that name (known: {', '.join(sorted(self.server.script_api)) or 'none'})"
            )
        value = cache[name] = factory(self)
        return value


class MessageContext(_ScriptApiMixin):
    """Context of :func:`sipline.hooks.message_received`: any parsed message."""

    __slots__ = ("msg", "source", "server", "_api_cache")

    def __init__(self, msg: Request | Response, source: Source, server: Server) -> None:
        self.msg = msg
        self.source = source
        self.server = server

    def drop(self) -> Drop:
        """Discard the message silently."""
        return DROP


class RequestContext(_ScriptApiMixin):
    """Context of :func:`sipline.hooks.route_request`."""

    __slots__ = ("msg", "source", "server", "flags", "vars", "_api_cache")

    def __init__(self, msg: Request, source: Source, server: Server) -> None:
        self.msg = msg
        self.source = source
        self.server = server
        self.flags: set[str] = set()
        self.vars: dict[str, Any] = {}

    # -- actions -------------------------------------------------------------
    @staticmethod
    def reply(
        status: int,
        reason: str | None = None,
        headers: Iterable[tuple[str, str]] = (),
        body: bytes = b"",
    ) -> Reply:
        """Build a ``Reply`` action (OpenSIPS ``sl_send_reply``)."""
        return Reply(status, reason, tuple(headers), body)

    @staticmethod
    def redirect(contacts: Iterable[str], status: int = 302) -> Redirect:
        """Build a ``Redirect`` action: a 3xx listing ``contacts``, best first."""
        return Redirect(tuple(contacts), status)

    @staticmethod
    def drop() -> Drop:
        """Build a ``Drop`` action: no answer, nothing forwarded."""
        return DROP

    # -- tests -----------------------------------------------------------------
    def is_myself(self, target: object = None) -> bool:
        """True when ``target`` (a URI, or the request URI by default) is local.

        Local means a host listed in ``[server] domains`` or one of the
        addresses sipline listens on, with a matching port when a port is
        given (OpenSIPS ``is_myself`` / Kamailio ``myself``).
        """
        uri = self.msg.uri if target is None else target
        if isinstance(uri, str):
            from sipline.sip import parse_uri

            uri = parse_uri(uri)
        host = getattr(uri, "host", None)
        if host is None:
            return False
        return self.server.is_local(host, getattr(uri, "port", None))


class ReplyContext(_ScriptApiMixin):
    """Context of :func:`sipline.hooks.route_reply`."""

    __slots__ = ("msg", "source", "server", "request", "_api_cache")

    def __init__(
        self, msg: Response, source: Source, server: Server, request: Request | None = None
    ) -> None:
        self.msg = msg
        self.source = source
        self.server = server
        self.request = request


class BranchContext(_ScriptApiMixin):
    """Context of :func:`sipline.hooks.route_branch`: one outgoing branch."""

    __slots__ = ("msg", "target", "branch_index", "request", "server", "_api_cache")

    def __init__(
        self,
        msg: Request,
        target: str,
        branch_index: int,
        request: RequestContext,
        server: Server,
    ) -> None:
        self.msg = msg
        self.target = target
        self.branch_index = branch_index
        self.request = request
        self.server = server


class FailureContext(_ScriptApiMixin):
    """Context of :func:`sipline.hooks.route_failure`: all branches failed."""

    __slots__ = ("request", "response", "server", "_api_cache")

    def __init__(self, request: RequestContext, response: Response, server: Server) -> None:
        self.request = request
        self.response = response
        self.server = server


class LocalContext(_ScriptApiMixin):
    """Context of :func:`sipline.hooks.route_local`: a request sipline originates."""

    __slots__ = ("msg", "destination", "server", "_api_cache")

    def __init__(self, msg: Request, destination: tuple[str, str, int], server: Server) -> None:
        self.msg = msg
        self.destination = destination
        self.server = server


class ErrorContext(_ScriptApiMixin):
    """Context of :func:`sipline.hooks.route_error`: bytes that did not parse."""

    __slots__ = ("error", "data", "source", "server", "_api_cache")

    def __init__(self, error: SipParseError, data: bytes, source: Source, server: Server) -> None:
        self.error = error
        self.data = data
        self.source = source
        self.server = server

    @staticmethod
    def reply(status: int, reason: str | None = None) -> Reply:
        """Build a ``Reply`` action for the broken request."""
        return Reply(status, reason)

    @staticmethod
    def drop() -> Drop:
        """Build a ``Drop`` action: stay silent."""
        return DROP
