"""The core's built-in default script: what sipline does when nothing else decides.

It is registered as the plugin ``core``, after every other plugin, so the
routing script and the plugins in ``[server] plugins`` always get the first
say. Without any plugin it makes sipline a small RFC 3261 endpoint: OPTIONS to
the server itself gets 200 with its capabilities (§11.2), ACK is absorbed,
CANCEL without a transaction gets 481, unknown methods 501, and anything else
404, since there is no location service to find a target in.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sipline.hooks import hookimpl
from sipline.routing.actions import DROP, Action, Reply

if TYPE_CHECKING:
    from sipline.routing.context import ErrorContext, RequestContext

#: Methods RFC 3261 and its extensions define; anything else gets 501 here.
KNOWN_METHODS = frozenset(
    {
        "INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "REGISTER", "PRACK", "SUBSCRIBE",
        "NOTIFY", "PUBLISH", "INFO", "REFER", "MESSAGE", "UPDATE",
    }
)

_NOT_FOUND = Reply(404, "Not Found")
_NO_TRANSACTION = Reply(481, "Call/Transaction Does Not Exist")


class CoreDefaults:
    """Hook implementations of the built-in default script."""

    @hookimpl(trylast=True)
    def route_request(self, ctx: RequestContext) -> Action:
        msg = ctx.msg
        method = msg.method
        if method == "ACK":
            return DROP  # an ACK ends nothing here: absorb it (§17.2.1)
        if method == "CANCEL":
            return _NO_TRANSACTION
        server = ctx.server
        unsupported = server.unsupported(msg.require)
        if unsupported:
            # We are the UAS for whatever we answer here (§8.2.2.3).
            return Reply(420, "Bad Extension", (("Unsupported", ", ".join(unsupported)),))
        if method not in KNOWN_METHODS:
            return Reply(501, "Not Implemented", (("Allow", server.allow_header),))
        if method == "OPTIONS" and ctx.is_myself() and not getattr(msg.uri, "user", None):
            return Reply(200, "OK", server.capability_headers)
        return _NOT_FOUND

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
