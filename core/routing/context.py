"""Per-message contexts handed to the route stages.

A context is the one argument of every stage hook. It carries the message,
where it came from, the server, and the state that OpenSIPS keeps in flags and
AVPs (``flags``, ``vars``). Plugins extend it through ``register_script_api``:
``ctx.registrar`` is created on first access by the factory the registrar
plugin registered.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from sipline.routing.actions import DROP, Drop, Redirect, Reply
from sipline.sip.uri import parse_uri

if TYPE_CHECKING:
    from sipline.proxy import Relayed
    from sipline.server import Server
    from sipline.sip import Request, Response, SipParseError
    from sipline.transport.base import Source


def _own_route_params(line: str, prefixes: tuple[str, ...]) -> dict[str, str | None] | None:
    """The parameters of a Route line that is one of our Record-Route values plus simple
    parameters (``<sip:us;lr;did=x>``), read without parsing the URI; None otherwise."""
    if not line.endswith(">") or "," in line or '"' in line:
        return None
    for prefix in prefixes:
        if line.startswith(prefix) and line[len(prefix)] == ";":
            out: dict[str, str | None] = {"lr": None}
            for item in line[len(prefix) + 1:-1].split(";"):
                name, eq, value = item.partition("=")
                name = name.strip().lower()
                if not name or "<" in item or ">" in item or "?" in item:
                    return None  # anything unusual: the careful path decides
                out[name] = value.strip() if eq else None
            return out
    return None


class _ScriptApiMixin:
    """Resolves ``ctx.<name>`` through the script APIs plugins registered."""

    __slots__ = ()
    server: Server
    _api_cache: dict[str, Any] | None  # a slot of every context class, set on first use

    def __getattr__(self, name: str) -> Any:
        # Only called when normal lookup failed, so real attributes stay fast.
        if name.startswith("_"):
            raise AttributeError(name)
        cache: dict[str, Any] | None = getattr(self, "_api_cache", None)
        if cache is None:
            cache = self._api_cache = {}  # type: ignore[misc]  # the slot lives in the subclasses
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

    def release_script_apis(self) -> None:
        """Forget the script API objects made for this context.

        They usually point back at the context: dropping them when the request
        is finished lets the context die by reference counting instead of
        waiting for the cycle collector. A later ``ctx.<name>`` makes a new one.
        """
        cache: dict[str, Any] | None = getattr(self, "_api_cache", None)
        if cache:
            cache.clear()


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
    """Context of :func:`sipline.hooks.route_request`: the request and its routing state.

    The routing state mirrors OpenSIPS pseudo-variables: ``ctx.ruri`` is
    ``$ru`` (the received ``msg`` keeps its own Request-URI, so retransmissions
    still match), ``ctx.dst`` is ``$du``, ``ctx.flags`` are message flags,
    ``ctx.branch_flags`` the flags of the first branch, ``ctx.vars`` AVPs.
    """

    __slots__ = (
        "msg", "source", "server", "flags", "vars", "dst", "rr", "branch_flags",
        "response_context", "failure_handler", "own_route", "rr_params", "route_params", "_ruri",
        "_branches", "_api_cache", "final_callbacks",
    )

    def __init__(self, msg: Request, source: Source, server: Server) -> None:
        self.msg = msg
        self.source = source
        self.server = server
        self.flags: set[str] = set()
        self.vars: dict[str, Any] = {}
        self.dst: str | None = None
        self.rr = False
        self.branch_flags: set[str] = set()
        self.response_context: Any = None
        self.failure_handler: Callable[[FailureContext], Any] | None = None
        #: Set by :meth:`loose_route` when a Route entry naming us was consumed,
        #: i.e. we record-routed this dialog (OpenSIPS's ``check_route_param``
        #: spirit): an in-dialog request without one did not come through us.
        self.own_route = False
        #: URI parameters of our Record-Route (OpenSIPS ``add_rr_param``), e.g. ``;did=x``.
        self.rr_params = ""
        #: Parameters of our Route entry that :meth:`loose_route` consumed (OpenSIPS
        #: ``$rr_params`` / ``check_route_param``): what a plugin put in its Record-Route.
        self.route_params: dict[str, str | None] = {}
        self._ruri: str | None = None
        self._branches: list[tuple[str, str | None, set[str]]] = []
        #: See :meth:`on_final`.
        self.final_callbacks: list[Callable[[Response], Any]] | None = None
        # Set here (not on first use as in the other contexts): the core releases the
        # APIs of every finished request, and reading an unset slot raises inside getattr.
        self._api_cache = None

    # -- actions -------------------------------------------------------------
    @staticmethod
    def reply(
        status: int,
        reason: str | None = None,
        headers: Iterable[tuple[str, str]] = (),
        body: bytes = b"",
    ) -> Reply:
        """Build a ``Reply`` action (OpenSIPS ``sl_send_reply`` / ``t_reply``)."""
        return Reply(status, reason, tuple(headers), body)

    @staticmethod
    def redirect(contacts: Iterable[str], status: int = 302) -> Redirect:
        """Build a ``Redirect`` action: a 3xx listing ``contacts``, best first."""
        return Redirect(tuple(contacts), status)

    @staticmethod
    def drop() -> Drop:
        """Build a ``Drop`` action: no answer, nothing forwarded."""
        return DROP

    def relay(self, *targets: str, dst: str | None = None) -> Relayed:
        """Relay statefully (OpenSIPS ``t_relay``) and report what happened.

        Without ``targets`` the branches are the current R-URI (``ctx.ruri``,
        sent to ``ctx.dst`` when set) plus every ``append_branch``; with
        ``targets`` exactly those URIs (parallel forking), each sent to
        ``dst`` when given. Returns a :class:`~sipline.proxy.Relayed` that is
        falsy on failure, with ``.error`` telling why (no target, bad
        target, loop, send failure, transaction exists); return it from the
        stage and the core answers a failure with the matching status.
        """
        if targets:
            branches = [(t, dst, set(self.branch_flags)) for t in targets]
        else:
            branches = [(self.ruri, dst or self.dst, self.branch_flags), *self._branches]
        return self.server.proxy.relay(self, branches)

    def forward(self, dst: str | None = None) -> Relayed:
        """Relay statelessly (OpenSIPS ``forward``): no transaction, one branch."""
        return self.server.proxy.relay(
            self, [(self.ruri, dst or self.dst, self.branch_flags)], stateless=True
        )

    def on_final(self, callback: Callable[[Response], Any]) -> None:
        """Call ``callback(response)`` when this request's final response goes upstream.

        OpenSIPS ``TMCB_RESPONSE_OUT``: once per transaction, with the final
        response actually sent (relayed, chosen among the branches, or generated
        locally: a 408 of Timer C, a 487 after CANCEL, a script's reply), after
        failure handling had its say; extra 2xx of a forked INVITE do not call
        it again. Exceptions are logged and ignored.
        """
        if self.final_callbacks is None:
            self.final_callbacks = []
        self.final_callbacks.append(callback)

    def on_failure(self, handler: Callable[[FailureContext], Any] | None) -> None:
        """Arm ``handler(fctx)`` to run when every branch failed (``t_on_failure``).

        It runs before the ``route_failure`` hooks and returns what they
        return: ``None`` (relay the best response upstream), a new relay
        (serial forking), a reply, or an awaitable of one.
        """
        self.failure_handler = handler

    # -- routing state -------------------------------------------------------
    @property
    def ruri(self) -> str:
        """The Request-URI the request will be relayed to (``$ru``)."""
        return self._ruri if self._ruri is not None else self.msg.raw_uri

    @property
    def ruri_uri(self) -> Any:
        """:attr:`ruri` parsed (the message's own parsed R-URI while it is not rewritten).

        :raises SipParseError: for a malformed R-URI.
        """
        return parse_uri(self._ruri) if self._ruri is not None else self.msg.uri

    def set_ruri(self, uri: object) -> None:
        """Rewrite the Request-URI of the relayed request (``$ru = ...``)."""
        text = str(uri)
        parse_uri(text)  # raises SipParseError for a malformed URI
        self._ruri = text

    def set_dst(self, uri: str | None) -> None:
        """Send to ``uri`` regardless of R-URI and Route (``$du``); None resets."""
        if uri is not None:
            parse_uri(uri)
        self.dst = uri

    def append_branch(
        self, uri: str | None = None, dst: str | None = None, flags: Iterable[str] = ()
    ) -> None:
        """Add a parallel branch (``append_branch``); default: the current R-URI."""
        self._branches.append((uri or self.ruri, dst, set(flags)))

    @property
    def branches(self) -> list[tuple[str, str | None, set[str]]]:
        """The extra branches added with :meth:`append_branch`."""
        return self._branches

    def record_route(self, params: str = "") -> None:
        """Add Record-Route with ``lr`` to the relayed request (two when switching sides).

        ``params`` (``";did=abc"``) are added to our Record-Route URI, as with
        :meth:`add_rr_param`.
        """
        self.rr = True
        if params:
            self.add_rr_param(params)

    def add_rr_param(self, param: str) -> None:
        """Add a URI parameter to our Record-Route (OpenSIPS ``add_rr_param``).

        In-dialog requests bring it back in their Route; :meth:`loose_route` then
        exposes it in :attr:`route_params`. ``param`` is ``";name=value"`` or
        ``";name"`` (the leading ``;`` may be omitted).
        """
        param = param.strip()
        if not param.startswith(";"):
            param = ";" + param
        if any(c in param for c in "<>\r\n ,"):
            raise ValueError(f"invalid Record-Route parameter {param!r}")
        self.rr_params += param

    def has_to_tag(self) -> bool:
        """True for in-dialog requests (``has_totag``)."""
        return bool(self.msg.to.tag)

    def loose_route(self) -> bool:
        """Process Route headers as RFC 3261 §16.4 says (OpenSIPS ``loose_route``).

        Removes the top Route entries that name this server, and undoes a
        strict router's rewriting (an R-URI that is one of our Record-Route
        URIs is replaced by the last Route). True when the request carried a
        Route set, that is, it is routed by Route rather than by R-URI.
        """
        msg = self.msg
        server = self.server
        had_routes = msg.has("route")
        uri = msg.uri
        host = getattr(uri, "host", None)
        if (
            host is not None
            and getattr(uri, "user", None) is None
            and "lr" in uri.params  # type: ignore[union-attr]
            and server.is_local(host, getattr(uri, "port", None) or 5060)
            and had_routes
        ):
            values = msg.get_list("route")
            msg.remove_header("route")
            for v in values[:-1]:
                msg.add_header("Route", v)
            last = values[-1].strip()
            self._ruri = last[1:last.index(">")] if last.startswith("<") else last
            self.own_route = True
            self.route_params = dict(uri.params)  # type: ignore[union-attr]
            return True
        if not had_routes:
            return False
        # Fast path: Route lines that are exactly a Record-Route value we wrote
        # (what user agents echo back), recognised without parsing them.
        own = server.own_routes
        lines = msg.get_all("route")
        mine = 0
        params: dict[str, str | None] | None = None
        for line in lines:
            if line in own:
                mine += 1
                continue
            extra = _own_route_params(line, server.own_route_prefixes)
            if extra is None:
                break
            params = extra if params is None else {**params, **extra}
            mine += 1
        if mine and (mine == len(lines) or "," not in lines[mine]):
            msg.remove_header("route")
            for line in lines[mine:]:
                msg.add_header("Route", line)
            self.own_route = True
            if params is not None:
                self.route_params = params
            return True
        values = msg.get_list("route")
        routes = msg.routes
        keep = 0
        for r in routes:
            u = r.uri
            h = getattr(u, "host", None)
            if h is not None and server.is_local(h, getattr(u, "port", None) or 5060):
                keep += 1
            else:
                break
        if keep:
            msg.remove_header("route")
            for v in values[keep:]:
                msg.add_header("Route", v)
            self.own_route = True
            consumed: dict[str, str | None] = {}
            for r in routes[:keep]:
                consumed.update(r.uri.params)  # type: ignore[union-attr]
            self.route_params = consumed
        return True

    # -- headers (convenience over ctx.msg) ----------------------------------
    def add_header(self, name: str, value: str, *, first: bool = False) -> None:
        """Add a header to the request (``append_hf``/``insert_hf``)."""
        self.msg.add_header(name, value, first=first)

    def remove_header(self, name: str) -> int:
        """Remove every header ``name`` (``remove_hf``); returns how many."""
        return self.msg.remove_header(name)

    def set_header(self, name: str, value: str) -> None:
        """Replace header ``name`` (or add it)."""
        self.msg.set_header(name, value)

    # -- tests -----------------------------------------------------------------
    def is_myself(self, target: object = None) -> bool:
        """True when ``target`` (a URI, or the current R-URI by default) is local.

        Local means a host listed in ``[server] domains`` or one of the
        addresses sipline listens on, with a matching port when a port is
        given (OpenSIPS ``is_myself`` / Kamailio ``myself``).
        """
        if target is None:
            uri: Any = self.msg.uri if self._ruri is None else self._ruri
        else:
            uri = target
        if isinstance(uri, str):
            uri = parse_uri(uri)
        host = getattr(uri, "host", None)
        if host is None:
            return False
        return self.server.is_local(host, getattr(uri, "port", None))


class ReplyContext(_ScriptApiMixin):
    """Context of :func:`sipline.hooks.route_reply`."""

    __slots__ = ("msg", "source", "server", "request", "vars", "flags", "_api_cache")

    def __init__(
        self,
        msg: Response,
        source: Source,
        server: Server,
        request: Request | None = None,
        request_ctx: RequestContext | None = None,
    ) -> None:
        self.msg = msg
        self.source = source
        self.server = server
        self.request = request
        #: The per-transaction variables and message flags of the request this
        #: response answers (OpenSIPS AVPs and flags in ``onreply_route``);
        #: fresh empty ones for a response no transaction matched.
        self.vars: dict[str, Any] = request_ctx.vars if request_ctx is not None else {}
        self.flags: set[str] = request_ctx.flags if request_ctx is not None else set()


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
    """Context of :func:`sipline.hooks.route_failure`: all branches failed.

    ``ctx.request`` is the request's context (change ``ruri``/``dst``, arm
    another ``on_failure``) and ``ctx.response`` the best final response so
    far. ``ctx.relay(...)`` adds new branches to the same transaction (serial
    forking); ``ctx.reply(...)`` answers upstream instead of that response.
    """

    __slots__ = ("request", "response", "server", "_api_cache")

    def __init__(self, request: RequestContext, response: Response, server: Server) -> None:
        self.request = request
        self.response = response
        self.server = server

    def relay(self, *targets: str, dst: str | None = None) -> Relayed:
        """Try more targets in the same transaction (``t_relay`` in a failure route)."""
        req = self.request
        if targets:
            return req.relay(*targets, dst=dst)
        return self.server.proxy.relay(req, [(req.ruri, dst or req.dst, req.branch_flags)])

    @staticmethod
    def reply(
        status: int,
        reason: str | None = None,
        headers: Iterable[tuple[str, str]] = (),
        body: bytes = b"",
    ) -> Reply:
        """Answer upstream with a local response instead of the best one."""
        return Reply(status, reason, tuple(headers), body)


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
