"""The core's built-in default script: what sipline does when nothing else decides.

It is registered as the plugin ``core``, after every other plugin, so the
routing script and the plugins in ``[server] plugins`` always get the first
say. It mirrors OpenSIPS's default ``opensips.cfg`` (Max-Forwards, CANCEL and
retransmissions are handled by the core before it runs):

1. in-dialog requests (To tag) are loose-routed and relayed along their
   Route set when it names us (we record-routed the dialog) or the proxy is
   open; an ACK that cannot be routed is absorbed, anything else 404;
2. a CANCEL that matched no transaction gets 481;
3. a request for a domain that is not local is relayed (with Record-Route)
   when ``[proxy] open_proxy`` is on, else refused with 403 "Relay forbidden";
4. for local targets: OPTIONS to the server itself gets 200 with its
   capabilities (RFC 3261 §11.2), an unknown method 501, a REGISTER 501 when
   no registrar plugin took it, a user found by the location service (the
   ``registrar`` script API, when installed) is relayed, anyone else 404.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sipline.hooks import hookimpl
from sipline.routing.actions import DROP, Action, Reply

if TYPE_CHECKING:
    from sipline.proxy import Relayed
    from sipline.routing.context import ErrorContext, RequestContext

#: Methods RFC 3261 and its extensions define; anything else gets 501 here.
KNOWN_METHODS = frozenset(
    {
        "INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "REGISTER", "PRACK", "SUBSCRIBE",
        "NOTIFY", "PUBLISH", "INFO", "REFER", "MESSAGE", "UPDATE",
    }
)

_NOT_FOUND = Reply(404, "Not Found")
_NOT_HERE = Reply(404, "Not here")
_NO_TRANSACTION = Reply(481, "Call/Transaction Does Not Exist")


#: Initial requests that may create a dialog get Record-Route (not REGISTER,
#: MESSAGE, OPTIONS, PUBLISH).
RECORD_ROUTE_METHODS = frozenset({"INVITE", "SUBSCRIBE", "REFER", "NOTIFY", "UPDATE", "INFO", "PRACK"})

_RELAY_FORBIDDEN = Reply(403, "Relay forbidden")
_PRELOADED_ROUTE = Reply(403, "Preloaded Route header")


class CoreDefaults:
    """Hook implementations of the built-in default script."""

    @hookimpl(trylast=True)
    def route_request(self, ctx: RequestContext) -> Action | Relayed:
        msg = ctx.msg
        method = msg.method
        if msg.to.tag:
            return self._in_dialog(ctx, method)
        if method == "CANCEL":
            return _NO_TRANSACTION  # the proxy core matched no INVITE to cancel
        if method == "ACK":
            return DROP  # an ACK ends nothing here: absorb it (§17.2.1)
        server = ctx.server
        cfg = server.config.proxy
        if msg.has("route"):
            # A pre-loaded route: drop the entries naming us and follow the rest.
            ctx.loose_route()
            if msg.has("route"):
                if not cfg.open_proxy:
                    return _PRELOADED_ROUTE
                return self._relay(ctx, method, cfg.record_route)
        if not ctx.is_myself():
            if not cfg.open_proxy:
                return _RELAY_FORBIDDEN
            return self._relay(ctx, method, cfg.record_route)
        # From here on the request is for us or our users: we act as the UAS.
        unsupported = server.unsupported(msg.require)
        if unsupported:
            return Reply(420, "Bad Extension", (("Unsupported", ", ".join(unsupported)),))
        if method not in KNOWN_METHODS:
            return Reply(501, "Not Implemented", (("Allow", server.allow_header),))
        if method == "OPTIONS" and not getattr(msg.uri, "user", None):
            return Reply(200, "OK", server.capability_headers)
        if method == "REGISTER":
            return Reply(501, "Not Implemented", (("Allow", server.allow_header),))
        if "registrar" in server.script_api and ctx.registrar.lookup():
            return self._relay(ctx, method, cfg.record_route)
        return _NOT_FOUND

    @staticmethod
    def _relay(ctx: RequestContext, method: str, record_route: bool) -> Relayed:
        if record_route and method in RECORD_ROUTE_METHODS:
            ctx.record_route()
        return ctx.relay()

    @staticmethod
    def _in_dialog(ctx: RequestContext, method: str) -> Action | Relayed:
        open_proxy = ctx.server.config.proxy.open_proxy
        if ctx.loose_route() and (ctx.own_route or open_proxy):
            # Only dialogs we record-routed, unless open: a To tag must not
            # be a way around "Relay forbidden".
            return ctx.relay()  # an ACK for a 2xx goes statelessly
        if method == "ACK":
            return DROP
        if open_proxy and not ctx.is_myself():
            return ctx.relay()  # a dialog that was not record-routed through us
        return _NOT_HERE

    @hookimpl(trylast=True)
    def route_error(self, ctx: ErrorContext) -> Action:
        error = ctx.error
        partial = error.message
        # Only a request whose Via could be read can be answered; a broken
        # response is always dropped (RFC 4475 §3.1.2.5, §3.1.2.19).
        if partial is None or getattr(partial, "method", None) is None:
            return DROP
        if partial.method == "ACK":
            return DROP  # never answer an ACK (§17.1.1.3)
        return Reply(error.status, error.reason)
