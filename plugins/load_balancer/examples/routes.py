"""A routing script for sipline with the load balancer: calls load-balanced over the gateways
of group 1 by their free "pstn" capacity, moved to the next gateway when one fails.

Copy it, name it in ``[server] script``, and enable the plugins it uses::

    [server]
    plugins = ["dialog", "load_balancer"]
    script = "routes.py"

Everything else (in-dialog requests, REGISTER, OPTIONS to the server, 404/403...) is left to
the plugins and the built-in default script by returning None.
"""

GROUP = 1
RESOURCES = "pstn"  # "pstn;transc" asks for a slot of each


def route_request(ctx):
    msg = ctx.msg
    if ctx.has_to_tag():
        return None  # in-dialog: the dialog plugin follows it, the default script relays it
    if msg.method != "INVITE":
        return None

    result = ctx.lb.start(GROUP, RESOURCES)  # flags: "r" relative, "n" allow overload
    if not result:
        # result.status: 500 when no gateway of the group offers these resources (a
        # configuration problem), 503 when they are all busy or down.
        return ctx.reply(result.status, result.reason)
    ctx.on_failure(next_gateway)
    return ctx.relay()  # to result.uri (ctx.dst); the Request-URI is unchanged


def next_gateway(fctx):
    """Failover: a 5xx or a timeout from a gateway moves the call to the next one."""
    status = fctx.response.status
    if status < 500 and status != 408:
        return None  # busy, not found...: a real answer, relayed upstream
    if not fctx.lb.next():
        return None  # no other gateway: the best response goes upstream
    fctx.request.on_failure(next_gateway)
    return fctx.relay()
