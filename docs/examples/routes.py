"""An example routing script for sipline: copy it, change it, name it in [server] script.

It does what OpenSIPS's default opensips.cfg does, plus a static route for a
PSTN gateway with failover to a second one. Every function is optional:
whatever returns None falls through to the plugins and then to the built-in
default script.
"""

GATEWAYS = ["sip:127.0.0.1:5070", "sip:127.0.0.1:5071"]


def route_request(ctx):
    msg = ctx.msg

    # In-dialog requests follow their Route set, but only dialogs we
    # record-routed: a To tag must not open a relay.
    if ctx.has_to_tag():
        if ctx.loose_route() and ctx.own_route:
            return ctx.relay()
        if msg.method == "ACK":
            return ctx.drop()
        return ctx.reply(404, "Not here")

    # Calls to numbers go to the PSTN gateways, first one first.
    user = getattr(msg.uri, "user", None) or ""
    if msg.method == "INVITE" and user.lstrip("+").isdigit():
        ctx.record_route()
        ctx.vars["gateway"] = 0
        ctx.set_dst(GATEWAYS[0])
        ctx.on_failure(next_gateway)
        result = ctx.relay()
        if not result:
            return ctx.reply(result.error.status, result.error.reason)
        return result

    # Everything else: the default script (registrar, location, 403/404...).
    return None


def next_gateway(fctx):
    """Serial forking: on 5xx/408 from one gateway, try the next one."""
    request = fctx.request
    if fctx.response.status < 500 and fctx.response.status != 408:
        return None  # a real answer (busy, not found...): relay it upstream
    index = request.vars["gateway"] + 1
    if index >= len(GATEWAYS):
        return None
    request.vars["gateway"] = index
    request.set_dst(GATEWAYS[index])
    request.on_failure(next_gateway)
    return fctx.relay()
