"""route_request: the main decision stage, through a real server on loopback."""

from __future__ import annotations

import asyncio
import logging
import textwrap
from pathlib import Path

from hookkit import assert_next_answers, sip_request

from sipline.hooks import hookimpl
from sipline.routing.actions import Reply
from sipline.routing.script import load_script
from sipline.testing import inprocess_server


class Answers:
    """Answers one method with a fixed reason phrase; declines everything else."""

    def __init__(self, method: str, reason: str, status: int = 200) -> None:
        self.method = method
        self.reason = reason
        self.status = status
        self.seen: list[str] = []

    @hookimpl
    def route_request(self, ctx):
        self.seen.append(ctx.msg.method)
        if ctx.msg.method == self.method:
            return ctx.reply(self.status, self.reason)
        return None


class Declines:
    def __init__(self, log: list[str], name: str) -> None:
        self.log = log
        self.name = name

    @hookimpl
    def route_request(self, ctx):
        self.log.append(self.name)
        return None


def test_hook_route_request_answers_custom_method(client_for):
    hello = Answers("HELLO", "Hello There")
    with inprocess_server(plugins=[("hello", hello)]) as srv:
        client = client_for(srv)
        answer = client.request(sip_request(srv, client, "HELLO"))
        assert (answer.status, answer.reason) == (200, "Hello There")
        assert hello.seen == ["HELLO"]


def test_hook_route_request_over_tcp(client_for):
    hello = Answers("HELLO", "Hello Stream")
    with inprocess_server(plugins=[("hello", hello)]) as srv:
        client = client_for(srv, "tcp")
        answer = client.request(sip_request(srv, client, "HELLO", transport="TCP"))
        assert (answer.status, answer.reason) == (200, "Hello Stream")


def test_hook_route_request_decline_falls_through_to_core_default(client_for):
    calls: list[str] = []
    plugins = [("first", Declines(calls, "first")), ("second", Declines(calls, "second"))]
    with inprocess_server(plugins=plugins) as srv:
        client = client_for(srv)
        # OPTIONS to the server itself: the core default answers 200 with its capabilities.
        ok = client.request(sip_request(srv, client))
        assert ok.status == 200
        assert ok.get("allow") is not None
        assert calls == ["first", "second"]
        # A known method nobody handles: the core default has no target, 404.
        calls.clear()
        not_found = client.request(sip_request(srv, client, "MESSAGE"))
        assert not_found.status == 404
        assert calls == ["first", "second"]


def test_hook_route_request_order_follows_server_plugins(client_for):
    a = Answers("HELLO", "From A")
    b = Answers("HELLO", "From B")
    with inprocess_server(plugins=[("a", a), ("b", b)]) as srv:
        client = client_for(srv)
        assert client.request(sip_request(srv, client, "HELLO")).reason == "From A"
        assert (a.seen, b.seen) == (["HELLO"], [])  # firstresult: b was never asked
    # Same objects, the TOML order reversed: the other one wins.
    a.seen.clear()
    toml = {"server": {"plugins": ["b", "a"]}}
    with inprocess_server(toml, plugins=[("b", b), ("a", a)]) as srv:
        client = client_for(srv)
        assert client.request(sip_request(srv, client, "HELLO")).reason == "From B"
        assert (a.seen, b.seen) == ([], ["HELLO"])


class AsyncAnswer:
    """Decides synchronously, then does its work in an awaitable."""

    def __init__(self) -> None:
        self.awaited = False

    @hookimpl
    def route_request(self, ctx):
        if ctx.msg.method != "HELLO":
            return None

        async def work():
            await asyncio.sleep(0.01)
            self.awaited = True
            return ctx.reply(202, "Done Later")

        return work()


def test_hook_route_request_awaitable_is_awaited(client_for):
    plugin = AsyncAnswer()
    with inprocess_server(plugins=[("slow", plugin)]) as srv:
        client = client_for(srv)
        answer = client.request(sip_request(srv, client, "HELLO"))
        assert (answer.status, answer.reason) == (202, "Done Later")
        assert plugin.awaited
        # Declining synchronously still lets the core default answer.
        assert client.request(sip_request(srv, client)).status == 200


class LateDecline:
    """Looks the request up asynchronously and finds it is not its business."""

    def __init__(self) -> None:
        self.looked_up = 0

    @hookimpl
    def route_request(self, ctx):
        async def lookup():
            await asyncio.sleep(0.01)
            self.looked_up += 1
            return None  # a late decline

        return lookup()


class NextInLine:
    @hookimpl
    def route_request(self, ctx):
        if ctx.msg.method == "HELLO":
            return ctx.reply(203, "Next In Line")
        return None


def test_hook_route_request_awaitable_resolving_to_none_resumes_pipeline(client_for):
    late = LateDecline()
    with inprocess_server(plugins=[("late", late), ("next", NextInLine())]) as srv:
        client = client_for(srv)
        answer = client.request(sip_request(srv, client, "HELLO"))
        assert (answer.status, answer.reason) == (203, "Next In Line")
        # ...and past every plugin down to the core default
        assert client.request(sip_request(srv, client)).status == 200
        assert late.looked_up == 2


class Explodes:
    @hookimpl
    def route_request(self, ctx):
        if ctx.msg.method == "HELLO":
            raise KeyError("no such subscriber")
        if ctx.msg.method == "MESSAGE":

            async def later():
                await asyncio.sleep(0)
                raise RuntimeError("database went away")

            return later()
        return None


def test_hook_route_request_exception_gives_500_and_server_keeps_serving(client_for, caplog):
    caplog.set_level(logging.ERROR, logger="sipline")
    with inprocess_server(plugins=[("boom", Explodes())]) as srv:
        client = client_for(srv)
        answer = client.request(sip_request(srv, client, "HELLO"))
        assert answer.status == 500
        # The log names the plugin that failed and the stage.
        assert any(
            "'boom'" in r.getMessage() and "route_request" in r.getMessage()
            for r in caplog.records
        ), [r.getMessage() for r in caplog.records]
        assert client.request(sip_request(srv, client)).status == 200
        # An exception raised by the returned awaitable is a 500 as well.
        assert client.request(sip_request(srv, client, "MESSAGE")).status == 500
        assert client.request(sip_request(srv, client)).status == 200


def test_hook_route_request_non_action_result_gives_500(client_for, caplog):
    class Confused:
        @hookimpl
        def route_request(self, ctx):
            return 404 if ctx.msg.method == "HELLO" else None  # not an action

    caplog.set_level(logging.ERROR, logger="sipline")
    with inprocess_server(plugins=[("confused", Confused())]) as srv:
        client = client_for(srv)
        assert client.request(sip_request(srv, client, "HELLO")).status == 500
        assert client.request(sip_request(srv, client)).status == 200


def test_hook_route_request_drop_and_redirect(client_for):
    class Decides:
        @hookimpl
        def route_request(self, ctx):
            if ctx.msg.method == "HELLO":
                return ctx.drop()
            if ctx.msg.method == "MESSAGE":
                return ctx.redirect(["sip:bob@192.0.2.7", "sip:bob@192.0.2.8"])
            return None

    with inprocess_server(plugins=[("decides", Decides())]) as srv:
        client = client_for(srv)
        client.send(sip_request(srv, client, "HELLO"))
        assert_next_answers(client, srv, 200)  # the HELLO got no answer
        moved = client.request(sip_request(srv, client, "MESSAGE"))
        assert moved.status == 302
        assert "sip:bob@192.0.2.7" in (moved.get("contact") or "")


SCRIPT = """
def route_request(ctx):
    ctx.vars["script_saw"] = ctx.msg.method
    if ctx.msg.method == "HELLO":
        return ctx.reply(200, "From Script")
    return None
"""


def test_hook_route_request_script_runs_before_plugins(client_for, tmp_path: Path):
    path = tmp_path / "routes.py"
    path.write_text(textwrap.dedent(SCRIPT))
    script = load_script(path)
    seen_vars: list[dict] = []

    class Plugin:
        @hookimpl
        def route_request(self, ctx):
            seen_vars.append(dict(ctx.vars))
            if ctx.msg.method in ("HELLO", "MESSAGE"):
                return Reply(200, "From Plugin")
            return None

    with inprocess_server(plugins=[("plugin", Plugin())], script=script) as srv:
        client = client_for(srv)
        assert client.request(sip_request(srv, client, "HELLO")).reason == "From Script"
        assert seen_vars == []  # the script decided; the plugin was not asked
        # The script declines MESSAGE: the plugin is asked next, on the same ctx.
        assert client.request(sip_request(srv, client, "MESSAGE")).reason == "From Plugin"
        assert seen_vars == [{"script_saw": "MESSAGE"}]
