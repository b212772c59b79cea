"""The dialog plugin in a real in-process server, with raw UDP phones on both sides:
create, match, confirm, BYE, failures, timeouts with BYE to both sides, MI, the API."""

from __future__ import annotations

import asyncio

import pytest
from dialogkit import Call, Phone, script
from sipline.hooks import hookimpl
from sipline.mi.commands import build_table
from sipline.mi.jsonrpc import Dispatcher
from sipline.testing import inprocess_server, wait_for
from sipline_dialog import ENDED, DialogPlugin, DialogState, api

SCRIPT = """
CALLEE = "{callee}"

def route_request(ctx):
    if ctx.has_to_tag():
        return None  # in-dialog: the dialog plugin observes, the default script relays
    if ctx.msg.method == "INVITE":
        dlg = ctx.dialog.create()
        ctx.dialog.set_dlg_profile("calls")
        ctx.dialog.set_dlg_profile("caller", ctx.msg.from_.uri.user)
        dlg.vars["customer"] = "acme"
        return ctx.relay(CALLEE)
    return None
"""


@pytest.fixture
def phones():
    made: list[Phone] = []

    def make(name: str) -> Phone:
        p = Phone(name)
        made.append(p)
        return p

    yield make
    for p in made:
        p.close()


def settings(**dialog):
    base = {"profiles_no_value": ["calls"], "profiles_with_value": ["caller"]}
    base.update(dialog)
    return {"server": {"timer_interval": 0.05}, "plugins": {"dialog": base}}


def stats(srv) -> dict:
    values = srv.server.stats.get(["dialog:"])
    return {k.split(":")[1]: v for k, v in values.items()}


def on_loop(srv, fn, *args):
    """Run ``fn`` in the server's loop (where the table lives) and return its result."""
    async def run():
        return fn(*args)

    return srv.call(run())


def test_call_is_tracked_from_invite_to_bye(tmp_path, phones):
    caller, callee = phones("alice"), phones("bob")
    plugin = DialogPlugin()
    routes = script(tmp_path, SCRIPT.format(callee=callee.contact))
    with inprocess_server(settings(), [("dialog", plugin)], script=routes) as srv:
        table = plugin.table
        call = Call(caller, callee, srv.address())
        invite = call.invite()
        rr = invite.get_all("Record-Route")
        assert len(rr) == 1 and ";did=" in rr[0]
        (dlg,) = table.dialogs.values()
        assert rr[0].endswith(f";did={dlg.id}>")
        assert dlg.state is DialogState.UNCONFIRMED and dlg.caller_contact == caller.contact
        assert table.profile_size("calls") == 1 and table.profile_size("caller", "alice") == 1
        call.ring()
        assert dlg.state is DialogState.EARLY and stats(srv)["early_dialogs"] == 1
        call.answer(200)
        assert dlg.state is DialogState.CONFIRMED
        assert dlg.to_tag == call.to_tag and dlg.callee_contact == callee.contact
        assert dlg.caller_route_set == () and dlg.callee_route_set == ()
        assert dlg.caller_sock == dlg.callee_sock == f"udp:127.0.0.1:{srv.address()[1]}"
        assert stats(srv) == {"active_dialogs": 1, "early_dialogs": 0, "processed_dialogs": 1,
                              "expired_dialogs": 0, "failed_dialogs": 0}
        call.ack()
        call.caller_request("INFO")
        assert dlg.caller_cseq == 2
        bye = call.caller_request("BYE")
        assert not bye.has("Route")  # our Route entry was consumed: relayed by the default
        assert dlg.state is DialogState.DELETED and dlg.end_event == "terminated"
        assert table.profile_size("calls") == 0 and table.profile_size("caller") == 0
        assert stats(srv)["active_dialogs"] == 0 and not table.dialogs
        assert dlg.vars == {"customer": "acme"}


def test_bye_from_the_callee_ends_the_dialog_and_counts_its_cseq(tmp_path, phones):
    caller, callee = phones("alice"), phones("bob")
    plugin = DialogPlugin()
    routes = script(tmp_path, SCRIPT.format(callee=callee.contact))
    with inprocess_server(settings(), [("dialog", plugin)], script=routes) as srv:
        call = Call(caller, callee, srv.address())
        call.establish()
        (dlg,) = plugin.table.dialogs.values()
        call.callee_request("INFO")
        assert dlg.callee_cseq == 101
        call.callee_request("BYE")
        assert dlg.end_event == "terminated" and dlg.callee_cseq == 102
        assert plugin.table.profile_size("calls") == 0


def test_rejected_and_cancelled_calls_fail_at_once(tmp_path, phones):
    caller, callee = phones("alice"), phones("bob")
    plugin = DialogPlugin()
    routes = script(tmp_path, SCRIPT.format(callee=callee.contact))
    with inprocess_server(settings(), [("dialog", plugin)], script=routes) as srv:
        table = plugin.table
        busy = Call(caller, callee, srv.address())
        busy.invite()
        busy.ring()
        assert busy.answer(486).status == 486
        wait_for(lambda: not table.dialogs, 1, "the 486 failed the dialog")
        assert stats(srv)["failed_dialogs"] == 1 and table.profile_size("calls") == 0
        cancelled = Call(caller, callee, srv.address())
        cancelled.invite()
        cancelled.ring()
        assert cancelled.cancel().status == 487
        wait_for(lambda: not table.dialogs, 1, "the CANCEL failed the dialog")
        assert stats(srv)["failed_dialogs"] == 2 and stats(srv)["early_dialogs"] == 0
        assert table.profile_size("caller") == 0


def test_serial_forking_keeps_the_dialog_until_the_last_branch(tmp_path, phones):
    caller, first, second = phones("alice"), phones("busy"), phones("bob")
    plugin = DialogPlugin()
    routes = script(tmp_path, f"""
        def next_one(fctx):
            return fctx.relay("{second.contact}")

        def route_request(ctx):
            if ctx.has_to_tag():
                return None
            if ctx.msg.method == "INVITE":
                ctx.dialog.create()
                ctx.dialog.set_dlg_profile("calls")
                ctx.on_failure(next_one)
                return ctx.relay("{first.contact}")
    """)
    with inprocess_server(settings(), [("dialog", plugin)], script=routes) as srv:
        table = plugin.table
        call = Call(caller, second, srv.address())
        call.caller.send(call._caller_request("INVITE", 1, in_dialog=False), srv.address())
        invite, addr = first.request("INVITE")
        first.answer(invite, addr, 486, to_tag="busy-tag")
        first.request("ACK")
        call.invite_at_callee, call.invite_addr = second.request("INVITE")
        (dlg,) = table.dialogs.values()
        assert dlg.state is DialogState.UNCONFIRMED  # the 486 did not end it: a new branch
        assert call.answer(200).status == 200
        assert dlg.state is DialogState.CONFIRMED and table.failed == 0
        call.ack()
        call.caller_request("BYE")
        assert table.profile_size("calls") == 0 and not table.dialogs


def test_timeout_sends_bye_to_both_sides(tmp_path, phones):
    caller, callee = phones("alice"), phones("bob")
    plugin = DialogPlugin()
    routes = script(tmp_path, SCRIPT.format(callee=callee.contact).replace(
        "dlg = ctx.dialog.create()", "dlg = ctx.dialog.create(timeout=1)"))
    with inprocess_server(settings(bye_on_timeout=True), [("dialog", plugin)],
                          script=routes) as srv:
        ended: list[str] = []
        on_loop(srv, api(srv.server).subscribe, ENDED, lambda d, ev: ended.append(d.end_event))
        call = Call(caller, callee, srv.address())
        call.invite()
        (dlg,) = plugin.table.dialogs.values()
        call.answer(200)
        call.ack()
        call.caller_request("INFO")  # caller CSeq 2
        call.callee_request("INFO")  # callee CSeq 101
        assert dlg.lifetime == 1
        to_callee, addr_callee = callee.request("BYE", timeout=3)
        to_caller, addr_caller = caller.request("BYE", timeout=3)
        # BYE to the callee: as if the caller sent it
        assert str(to_callee.uri) == callee.contact
        assert (to_callee.from_.tag, to_callee.to.tag) == (call.from_tag, call.to_tag)
        assert to_callee.cseq.seq == 3 and to_callee.call_id == call.callid
        assert to_callee.top_via.host == "127.0.0.1" and len(to_callee.via) == 1
        # BYE to the caller: as if the callee sent it
        assert str(to_caller.uri) == caller.contact
        assert (to_caller.from_.tag, to_caller.to.tag) == (call.to_tag, call.from_tag)
        assert to_caller.cseq.seq == 102
        callee.answer(to_callee, addr_callee, 200)
        caller.answer(to_caller, addr_caller, 200)
        assert dlg.end_event == "expired" and ended == ["expired"]
        assert stats(srv)["expired_dialogs"] == 1 and plugin.table.profile_size("calls") == 0


def test_timeout_without_bye_on_timeout_stays_silent(tmp_path, phones):
    caller, callee = phones("alice"), phones("bob")
    plugin = DialogPlugin()
    routes = script(tmp_path, SCRIPT.format(callee=callee.contact))
    with inprocess_server(settings(default_timeout=1), [("dialog", plugin)], script=routes) as srv:
        Call(caller, callee, srv.address()).establish()
        wait_for(lambda: stats(srv)["expired_dialogs"] == 1, 3, "expiry")
        assert caller.quiet(0.3) and callee.quiet(0.1)


def test_reinvite_refreshes_the_timeout(tmp_path, phones):
    caller, callee = phones("alice"), phones("bob")
    plugin = DialogPlugin()
    routes = script(tmp_path, SCRIPT.format(callee=callee.contact))
    with inprocess_server(settings(default_timeout=60), [("dialog", plugin)], script=routes) as srv:
        call = Call(caller, callee, srv.address())
        call.establish()
        (dlg,) = plugin.table.dialogs.values()
        first = dlg.expires
        call.caller_request("INVITE")
        assert dlg.expires > first and dlg.caller_cseq == 2
        call.caller_request("BYE")


def test_auto_create_without_a_script(phones):
    caller, callee = phones("alice"), phones("bob")
    plugin = DialogPlugin()
    toml = settings(auto_create=True)
    toml["proxy"] = {"open_proxy": True}
    with inprocess_server(toml, [("dialog", plugin)]) as srv:
        call = Call(caller, callee, srv.address(), ruri=callee.contact)
        invite = call.invite()
        (dlg,) = plugin.table.dialogs.values()
        assert invite.get_all("Record-Route")[0].endswith(f";did={dlg.id}>")
        call.answer(200)
        call.ack()
        assert dlg.confirmed
        call.caller_request("BYE")
        assert dlg.ended and stats(srv)["processed_dialogs"] == 1


def test_a_script_relaying_in_dialog_requests_itself_still_ends_dialogs(tmp_path, phones):
    """No ctx.dialog.match() in the script: the BYE's final response ends the dialog."""
    caller, callee = phones("alice"), phones("bob")
    plugin = DialogPlugin()
    routes = script(tmp_path, f"""
        def route_request(ctx):
            if ctx.has_to_tag():
                if ctx.loose_route():
                    return ctx.relay()
                return ctx.reply(404)
            if ctx.msg.method == "INVITE":
                ctx.dialog.create()
                ctx.dialog.set_dlg_profile("calls")
                return ctx.relay("{callee.contact}")
    """)
    with inprocess_server(settings(), [("dialog", plugin)], script=routes) as srv:
        call = Call(caller, callee, srv.address())
        call.establish()
        (dlg,) = plugin.table.dialogs.values()
        call.caller_request("INFO")
        assert dlg.caller_cseq == 2  # caught up at the INFO's final response
        call.callee_request("BYE")
        assert dlg.end_event == "terminated" and plugin.table.profile_size("calls") == 0


def test_script_match_gives_the_dialog_to_in_dialog_requests(tmp_path, phones):
    caller, callee = phones("alice"), phones("bob")
    plugin = DialogPlugin()
    routes = script(tmp_path, f"""
        def route_request(ctx):
            if ctx.has_to_tag():
                dlg = ctx.dialog.match()  # before loose_route: read from the Route header
                ctx.loose_route()
                if dlg is not None:
                    seen = f"{{ctx.msg.method}}:{{ctx.dialog.current is dlg}}"
                    dlg.vars["seen"] = dlg.vars.get("seen", []) + [seen]
                return ctx.relay()
            if ctx.msg.method == "INVITE":
                ctx.dialog.create()
                ctx.dialog.vars["customer"] = "acme"
                return ctx.relay("{callee.contact}")
    """)
    with inprocess_server(settings(), [("dialog", plugin)], script=routes) as srv:
        call = Call(caller, callee, srv.address())
        call.establish()
        (dlg,) = plugin.table.dialogs.values()
        call.caller_request("BYE")
        assert dlg.vars == {"customer": "acme", "seen": ["ACK:True", "BYE:True"]}
        assert not plugin.table.dialogs


def test_dialog_answered_locally_fails_at_once(tmp_path, phones):
    """The script's own final reply goes through ctx.on_final: the dialog fails then."""
    caller, callee = phones("alice"), phones("bob")
    plugin = DialogPlugin()
    routes = script(tmp_path, """
        def route_request(ctx):
            if ctx.msg.method == "INVITE" and not ctx.has_to_tag():
                ctx.dialog.create()
                ctx.dialog.set_dlg_profile("calls")
                return ctx.reply(403, "Forbidden")
    """)
    with inprocess_server(settings(), [("dialog", plugin)],
                          script=routes) as srv:
        call = Call(caller, callee, srv.address())
        call.caller.send(call._caller_request("INVITE", 1, in_dialog=False), srv.address())
        assert caller.response("INVITE").status == 403
        wait_for(lambda: stats(srv)["failed_dialogs"] == 1, 0.5, "the answered dialog failed")
        assert plugin.table.profile_size("calls") == 0


def test_unanswered_invite_fails_when_its_transaction_times_out(tmp_path, phones):
    caller, callee = phones("alice"), phones("bob")
    plugin = DialogPlugin()
    routes = script(tmp_path, SCRIPT.format(callee=callee.contact))
    toml = settings()
    toml["proxy"] = {"fr_timeout": 0.5}
    with inprocess_server(toml, [("dialog", plugin)], script=routes) as srv:
        call = Call(caller, callee, srv.address())
        call.invite()  # the callee never answers: a local 408 after fr_timeout
        assert caller.response("INVITE", timeout=3).status == 408
        wait_for(lambda: stats(srv)["failed_dialogs"] == 1, 2, "the 408 failed the dialog")


def test_create_refuses_what_is_not_an_initial_invite(tmp_path, phones):
    caller, callee = phones("alice"), phones("bob")
    plugin = DialogPlugin()
    routes = script(tmp_path, """
        def route_request(ctx):
            if ctx.msg.method == "OPTIONS":
                ctx.dialog.create()
    """)
    with inprocess_server(settings(), [("dialog", plugin)], script=routes) as srv:
        call = Call(caller, callee, srv.address())
        call.caller.send(call._caller_request("OPTIONS", 1, in_dialog=False), srv.address())
        assert caller.response("OPTIONS").status == 500
        assert not plugin.table.dialogs


# --------------------------------------------------------------------------- MI
def mi(srv, method: str, params=None):
    dispatcher = Dispatcher(build_table(srv.server))
    request = {"jsonrpc": "2.0", "method": method, "id": 1}
    if params is not None:
        request["params"] = params
    return srv.call(dispatcher.call(request), timeout=10)


def test_mi_commands(tmp_path, phones):
    caller, callee = phones("alice"), phones("bob")
    plugin = DialogPlugin()
    routes = script(tmp_path, SCRIPT.format(callee=callee.contact))
    with inprocess_server(settings(), [("dialog", plugin)], script=routes) as srv:
        call = Call(caller, callee, srv.address())
        call.establish()
        (dlg,) = plugin.table.dialogs.values()
        listed = mi(srv, "dlg_list")["result"]["Dialogs"]
        assert [d["ID"] for d in listed] == [dlg.id]
        row = listed[0]
        assert row["state"] == 4 and row["callid"] == call.callid
        assert row["from_tag"] == call.from_tag and row["to_tag"] == call.to_tag
        assert row["vars"] == {"customer": "acme"}
        assert {"name": "caller", "value": "alice"} in row["profiles"]
        assert row["timeout"] - row["start_time"] == 43200
        assert mi(srv, "dialog:list", {"callid": "nope"})["result"] == {"Dialogs": []}
        assert mi(srv, "profile_get_size", ["calls"])["result"] == {
            "Profile": {"name": "calls", "value": None, "count": 1}}
        assert mi(srv, "dialog:profile_get_size", ["caller", "alice"])["result"]["Profile"]["count"] == 1
        assert mi(srv, "profile_get_size", ["caller", "carol"])["result"]["Profile"]["count"] == 0
        assert mi(srv, "profile_get_size", ["nope"])["error"]["code"] == -32602
        assert mi(srv, "profile_get_size", ["calls", "x"])["error"]["code"] == -32602
        assert [d["ID"] for d in mi(srv, "profile_list_dlgs", ["caller", "alice"])["result"]["Dialogs"]] == [dlg.id]
        assert mi(srv, "profile_get_values", ["caller"])["result"] == {
            "Profiles": [{"value": "alice", "count": 1}]}
        assert mi(srv, "dlg_end_dlg", ["nope"])["error"]["code"] == -32000

        async def end():  # the phones answer the BYEs while MI waits
            return await Dispatcher(build_table(srv.server)).call(
                {"jsonrpc": "2.0", "method": "dlg_end_dlg", "params": [dlg.id], "id": 2})

        pending = asyncio.run_coroutine_threadsafe(end(), srv.loop)
        bye, addr = callee.request("BYE")
        callee.answer(bye, addr, 200)
        bye, addr = caller.request("BYE")
        caller.answer(bye, addr, 481)
        answer = pending.result(5)
        assert answer["result"] == {"dialog_id": dlg.id, "caller": 481, "callee": 200}
        assert dlg.end_event == "terminated" and plugin.table.profile_size("calls") == 0
        assert mi(srv, "dlg_list")["result"] == {"Dialogs": []}


# --------------------------------------------------------------------------- API
class Counter:
    """A plugin using the dialog API the way the load balancer does."""

    def __init__(self) -> None:
        self.ended: list[tuple[str, str]] = []
        self.dialogs = None

    @hookimpl
    def startup(self, server):
        self.dialogs = api(server)
        self.dialogs.define_profile("lb", with_value=True)
        self.dialogs.subscribe(ENDED, lambda dlg, ev: self.ended.append((dlg.vars["dst"], dlg.end_event)))

    @hookimpl
    def route_request(self, ctx):
        if ctx.msg.method != "INVITE" or ctx.has_to_tag():
            return
        dst = ctx.msg.uri.user
        dlg = self.dialogs.create(ctx)
        dlg.vars["dst"] = dst
        dlg.set_profile("lb", f"{dst}/pstn")
        assert self.dialogs.current(ctx) is dlg
        return  # the core default relays (open proxy)


def test_another_plugin_counts_calls_through_the_api(phones):
    caller, callee = phones("alice"), phones("bob")
    plugin, counter = DialogPlugin(), Counter()
    toml = settings()
    toml["proxy"] = {"open_proxy": True}
    with inprocess_server(toml, [("counter", counter), ("dialog", plugin)]) as srv:
        call = Call(caller, callee, srv.address(), ruri=callee.contact.replace("bob", "gw1"))
        call.invite()
        assert counter.dialogs.profile_size("lb", "gw1/pstn") == 1
        assert [d.id for d in counter.dialogs.profile_dialogs("lb", "gw1/pstn")] == list(plugin.table.dialogs)
        call.answer(200)
        call.ack()
        call.caller_request("BYE")
        assert counter.ended == [("gw1", "terminated")]
        assert counter.dialogs.profile_size("lb") == 0
        busy = Call(caller, callee, srv.address(), ruri=callee.contact.replace("bob", "gw2"))
        busy.invite()
        busy.answer(503)
        wait_for(lambda: len(counter.ended) == 2, 1, "the failed call ended")
        assert counter.ended[1] == ("gw2", "failed")


def test_api_without_the_plugin_says_how_to_enable_it():
    with inprocess_server({}, []) as srv, pytest.raises(
        LookupError, match='add "dialog" to \\[server\\] plugins'
    ):
        api(srv.server)
