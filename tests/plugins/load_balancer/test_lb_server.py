"""The load balancer inside a real (in-process) server, with raw UDP callers and gateways:
lb_start / lb_next / lb_reset / lb_count_call from a routing script, the default behaviour
from TOML alone, counts released when dialogs end, probing, MI and statistics."""

from __future__ import annotations

import asyncio

import pytest
from lbkit import LB_SCRIPT, Caller, Gateway, script
from sipline.testing import free_port, inprocess_server, wait_for
from sipline_dialog import DialogPlugin
from sipline_load_balancer import LoadBalancerPlugin


@pytest.fixture
def gateways():
    made: list[Gateway] = []

    def make(n: int = 3, **kw) -> list[Gateway]:
        new = [Gateway(f"gw{len(made) + i + 1}", **kw) for i in range(n)]
        made.extend(new)
        return new

    yield make
    for g in made:
        g.close()


@pytest.fixture
def callers():
    made: list[Caller] = []

    def make(proxy) -> Caller:
        c = Caller(proxy)
        made.append(c)
        return c

    yield make
    for c in made:
        c.close()


def toml(gws, *, capacity: int = 2, lb: dict | None = None, probe_mode: int = 0) -> dict:
    port = free_port()
    settings = {
        "destinations": [
            {"id": i, "group_id": 1, "dst_uri": g.uri, "resources": f"pstn={capacity}",
             "probe_mode": probe_mode}
            for i, g in enumerate(gws, 1)
        ],
        "probing_interval": 0,
        **(lb or {}),
    }
    return {
        "server": {"listen": [f"udp:127.0.0.1:{port}"], "timer_interval": 0.05,
                   "domains": ["example.org"]},
        "plugins": {"dialog": {}, "load_balancer": settings},
    }


def loads(plugin: LoadBalancerPlugin) -> list[int]:
    return [d.load["pstn"] for d in plugin.require()]


def serve(config, routes=None, lb=None):
    lb = lb or LoadBalancerPlugin()
    return lb, inprocess_server(config, [("dialog", DialogPlugin()), ("load_balancer", lb)],
                                script=routes)


def test_calls_spread_by_free_capacity_then_503_and_a_bye_frees_a_slot(tmp_path, gateways, callers):
    gws = gateways(3)
    lb, server = serve(toml(gws), script(tmp_path, LB_SCRIPT))
    with server as srv:
        caller = callers(srv.address())
        legs = [caller.call() for _ in range(6)]
        assert [leg.status for leg in legs] == [200] * 6
        assert [len(g.invites) for g in gws] == [2, 2, 2]
        assert loads(lb) == [2, 2, 2]
        refused = caller.call()
        assert (refused.status, refused.final.reason) == (503, "Service Unavailable")
        assert sum(len(g.invites) for g in gws) == 6
        # a BYE ends a call on gw2: its slot is free again, and the next call takes it
        ended = next(leg for leg in legs if leg.callid in gws[1].invites)
        assert ended.bye() == 200
        wait_for(lambda: loads(lb) == [2, 1, 2], what="the BYE released the slot")
        admitted = caller.call()
        assert admitted.status == 200 and admitted.callid in gws[1].invites
        stats = srv.server.stats.get(["load_balancer:"])
        assert stats["load_balancer:started_calls"] == 7
        assert stats["load_balancer:no_capacity"] == 1
        assert stats["load_balancer:active_calls"] == 6
        assert (stats["load_balancer:dst_2_load"], stats["load_balancer:dst_2_calls"]) == (2, 3)
        assert stats["load_balancer:dst_1_enabled"] == 1
        for leg in legs + [admitted]:
            if leg is not ended:
                assert leg.bye() == 200
        wait_for(lambda: loads(lb) == [0, 0, 0] and not lb.calls, what="every count released")


def test_no_destination_at_all_is_the_scripts_500(tmp_path, gateways, callers):
    lb, server = serve(toml(gateways(1)), script(tmp_path, LB_SCRIPT))
    with server as srv:
        leg = callers(srv.address()).call(user="nowhere")  # group 9 does not exist
        assert (leg.status, leg.final.reason) == (500, "No Destination")
        assert srv.server.stats.get(["load_balancer:no_destination"]) == {
            "load_balancer:no_destination": 1}
        assert loads(lb) == [0] and not lb.calls


def test_a_503_from_a_destination_moves_the_call_to_the_next_one(tmp_path, gateways, callers):
    bad = gateways(1, invite=503)[0]
    good = gateways(2)
    lb, server = serve(toml([bad, *good]), script(tmp_path, LB_SCRIPT))
    with server as srv:
        leg = callers(srv.address()).call()
        assert leg.status == 200
        assert len(bad.invites) == 1 and len(good[0].invites) == 1
        assert loads(lb) == [0, 1, 0]  # the failed destination's count went back
        assert srv.server.stats.get(["load_balancer:failovers"]) == {"load_balancer:failovers": 1}
        assert leg.bye() == 200
        wait_for(lambda: loads(lb) == [0, 0, 0], what="released at the BYE")


def test_when_every_destination_fails_the_call_fails_and_nothing_stays_counted(
        tmp_path, gateways, callers):
    gws = gateways(2, invite=503)
    lb, server = serve(toml(gws), script(tmp_path, LB_SCRIPT))
    with server as srv:
        leg = callers(srv.address()).call()
        assert leg.status == 500  # RFC 3261 §16.7: a 503 is not relayed as such
        assert [len(g.invites) for g in gws] == [1, 1]
        wait_for(lambda: not lb.calls, what="the failed dialog released its session")
        assert loads(lb) == [0, 0]


def test_a_call_refused_by_the_callee_releases_its_count(tmp_path, gateways, callers):
    gws = gateways(1, invite=486)
    lb, server = serve(toml(gws), script(tmp_path, LB_SCRIPT))
    with server as srv:
        assert callers(srv.address()).call().status == 486  # no failover on 4xx
        wait_for(lambda: loads(lb) == [0] and not lb.calls, what="the count released")


def test_a_cancelled_call_releases_its_count(tmp_path, gateways, callers):
    gws = gateways(1, invite=None)  # rings until cancelled
    lb, server = serve(toml(gws), script(tmp_path, LB_SCRIPT))
    with server as srv:
        caller = callers(srv.address())
        leg = caller.ringing()
        assert loads(lb) == [1]
        assert caller.cancel(leg).status == 487
        wait_for(lambda: loads(lb) == [0] and not lb.calls, what="released by the CANCEL")


def test_a_destination_that_does_not_answer_times_out_and_the_call_moves_on(gateways, callers):
    dead = gateways(1, invite=0)[0]
    alive = gateways(1)[0]
    config = toml([dead, alive], lb={"route_invites": {"group": 1, "resources": "pstn"}})
    config["proxy"] = {"fr_timeout": 0.3}  # no answer at all on a branch: local 408
    lb, server = serve(config)
    with server as srv:
        leg = callers(srv.address()).call()
        assert leg.status == 200 and dead.invites and leg.callid in alive.invites
        assert loads(lb) == [0, 1]
        assert leg.bye() == 200
        wait_for(lambda: loads(lb) == [0, 0], what="released")


def test_default_behaviour_from_toml_alone(gateways, callers):
    bad = gateways(1, invite=503)[0]
    good = gateways(1)[0]
    config = toml([bad, good], capacity=1,
                  lb={"route_invites": {"group": 1, "resources": "pstn"}})
    lb, server = serve(config)
    with server as srv:
        caller = callers(srv.address())
        first = caller.call()
        assert first.status == 200 and len(bad.invites) == 1 and first.callid in good.invites
        second = caller.call()  # bad has a slot but answers 503, good is full: no more
        assert second.status == 500 and len(bad.invites) == 2
        assert loads(lb) == [0, 1]
        assert first.bye() == 200
        wait_for(lambda: loads(lb) == [0, 0], what="released")
        # a local domain is load-balanced; a foreign one is not (the default script refuses)
        assert caller.call(domain="example.org").status == 200
        assert caller.call(domain="elsewhere.net").status == 403
        assert len(good.invites) == 2


def test_default_behaviour_answers_503_without_capacity(gateways, callers):
    gws = gateways(1)
    _, server = serve(toml(gws, capacity=0, lb={"route_invites": {"group": 1,
                                                                  "resources": "pstn"}}))
    with server as srv:
        assert callers(srv.address()).call().status == 503
        assert gws[0].invites == []


SCRIPT_API = '''
SEEN = []

def route_request(ctx):
    if ctx.has_to_tag() or ctx.msg.method != "INVITE":
        return None
    user = ctx.msg.uri.user
    if user == "count":
        # a call *from* a destination: counted on it, no choice, no capacity check
        SEEN.append(("is_destination", ctx.lb.is_destination("127.0.0.1", {port1})))
        SEEN.append(("count_call", ctx.lb.count_call("127.0.0.1", {port1}, 1, "pstn")))
        SEEN.append(("started", ctx.lb.is_started(), ctx.lb.destination.id))
        return ctx.relay("sip:callee@127.0.0.1:{port2}")
    if user == "reset":
        ctx.lb.start(1, "pstn")
        SEEN.append(("reset", ctx.lb.reset(), ctx.lb.is_started(), ctx.lb.destination))
        return ctx.reply(480, "Reset")
    if user == "disable":
        result = ctx.lb.start(1, "pstn")
        SEEN.append(("disable", result.destination.id, ctx.lb.disable_dst()))
        return ctx.relay()
    result = ctx.lb.start_or_next(1, "pstn", "r")
    SEEN.append(("start", bool(result), result.uri))
    return ctx.relay() if result else ctx.reply(result.status, result.reason)
'''


def test_script_api_reset_count_call_and_disable_dst(tmp_path, gateways, callers):
    gws = gateways(2)
    routes = script(tmp_path, SCRIPT_API.format(port1=gws[0].port, port2=gws[1].port))
    seen = routes.__sipline_module__.SEEN
    lb, server = serve(toml(gws, capacity=1), routes)
    with server as srv:
        caller = callers(srv.address())
        counted = caller.call("count")
        assert counted.status == 200 and counted.callid in gws[1].invites
        assert seen[:3] == [("is_destination", True), ("count_call", True), ("started", True, 1)]
        assert loads(lb) == [1, 0]  # counted on gw1 although it went to gw2
        assert caller.call("reset").status == 480
        assert seen[3] == ("reset", True, False, None)
        assert loads(lb) == [1, 0]
        plain = caller.call()
        assert plain.status == 200 and seen[4] == ("start", True, gws[1].uri)
        assert caller.call().status == 503 and seen[5] == ("start", False, None)
        assert counted.bye() == 200 and plain.bye() == 200
        wait_for(lambda: loads(lb) == [0, 0], what="released")
        disabled = caller.call("disable")
        assert disabled.status == 200 and seen[6] == ("disable", 1, True)
        (first, _) = lb.mi_list()["Destinations"]
        assert first["state"] == "disabled (lb_disable_dst)" and not first["enabled"]
        assert disabled.bye() == 200


def test_probing_disables_a_silent_destination_and_enables_it_when_it_answers(
        tmp_path, gateways, callers):
    gws = gateways(2)
    flaky = gws[0]
    settings = {"probing_interval": 0.1, "probing_timeout": 0.3,
                "probing_failure_threshold": 2, "probing_success_threshold": 2,
                "probing_reply_codes": "501"}
    lb, server = serve(toml(gws, probe_mode=2, lb=settings), script(tmp_path, LB_SCRIPT))
    with server as srv:
        wait_for(lambda: flaky.probes >= 2 and gws[1].probes >= 2, what="probes")
        assert all(d.enabled for d in lb.require())
        flaky.options = None  # stops answering
        wait_for(lambda: not lb.require().get(1).enabled, timeout=3, what="disabled")
        dst = lb.require().get(1)
        assert dst.disabled == "probing" and dst.probe_failures >= 2 and dst.last_probe == 408
        caller = callers(srv.address())
        legs = [caller.call() for _ in range(2)]
        assert all(leg.callid in gws[1].invites for leg in legs)  # the calls avoid it
        assert caller.call().status == 503  # gw2 full, gw1 down
        flaky.options = 501  # "Not Implemented" counts as alive here
        wait_for(lambda: lb.require().get(1).enabled, timeout=3, what="enabled again")
        last = caller.call()
        assert last.status == 200 and last.callid in flaky.invites
        stats = srv.server.stats.get(["load_balancer:probes_sent", "load_balancer:probes_failed"])
        assert stats["load_balancer:probes_failed"] >= 2
        assert stats["load_balancer:probes_sent"] > stats["load_balancer:probes_failed"]
        for leg in [*legs, last]:
            assert leg.bye() == 200


def test_probe_mode_1_probes_only_disabled_destinations(tmp_path, gateways):
    gws = gateways(2)
    settings = {"probing_interval": 0.05, "probing_timeout": 0.3}
    config = toml(gws, lb=settings)
    config["plugins"]["load_balancer"]["destinations"][0]["probe_mode"] = 1
    lb, server = serve(config, script(tmp_path, LB_SCRIPT))
    with server as srv:
        srv.call(asyncio.sleep(0.3))
        assert (gws[0].probes, gws[1].probes) == (0, 0)  # enabled: not probed; 0: never
        lb.mi_status(1, 0)  # the operator's off: not probed either
        srv.call(asyncio.sleep(0.3))
        assert gws[0].probes == 0
        lb.mi_status(1, 1)
        srv.call(_disable_by_script(lb, 1))
        wait_for(lambda: lb.require().get(1).enabled, what="re-enabled by a probe")
        assert gws[0].probes >= 1 and gws[1].probes == 0


async def _disable_by_script(lb, ident):
    from sipline_load_balancer import Balancer

    Balancer.disable_by_script(lb.require().get(ident))


def test_mi_list_status_and_resize(tmp_path, gateways, callers):
    gws = gateways(2)
    lb, server = serve(toml(gws), script(tmp_path, LB_SCRIPT))
    with server as srv:
        commands = srv.server.mi_commands
        for name, alias in [("load_balancer:reload", "lb_reload"),
                            ("load_balancer:status", "lb_status"),
                            ("load_balancer:list", "lb_list"),
                            ("load_balancer:resize", "lb_resize")]:
            assert commands[name]["alias"] == alias
        leg = callers(srv.address()).call()
        listed = lb.mi_list()["Destinations"]
        assert listed[0] == {
            "id": 1, "group": 1, "uri": gws[0].uri, "enabled": True, "state": "enabled",
            "auto-re": False, "probe_mode": 0, "last_probe": None, "calls": 1,
            "Resources": [{"name": "pstn", "max": 2, "load": 1}], "attrs": None,
            "description": None,
        }
        assert lb.mi_status(1) == {"id": 1, "uri": gws[0].uri, "enabled": 1,
                                   "state": "enabled"}
        assert lb.mi_status(1, 0)["state"] == "disabled (lb_status)"
        with pytest.raises(ValueError, match="0 .disable. or 1"):
            lb.mi_status(1, 7)
        from sipline.mi.jsonrpc import MIError

        with pytest.raises(MIError, match="no destination 9"):
            lb.mi_status(9)
        assert lb.mi_resize(2, "pstn", 5)["Resources"] == [{"name": "pstn", "max": 5,
                                                            "load": 0}]
        with pytest.raises(ValueError, match="no resource 'vm'"):
            lb.mi_resize(2, "vm", 1)
        assert leg.bye() == 200


def test_without_the_dialog_plugin_the_server_does_not_start(gateways):
    from sipline.server import StartupError

    config = toml(gateways(1))
    del config["plugins"]["dialog"]
    with pytest.raises(StartupError, match="needs dialogs.*add \"dialog\""), \
            inprocess_server(config, [("load_balancer", LoadBalancerPlugin())]):
        pass
