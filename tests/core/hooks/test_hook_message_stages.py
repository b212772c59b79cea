"""message_received, route_reply and route_error through a real server on loopback."""

from __future__ import annotations

import asyncio
import logging

from hookkit import assert_next_answers, sip_request, sip_response

from sipline.hooks import hookimpl
from sipline.routing.actions import DROP, Reply
from sipline.sip import Request, Response, SipParseError
from sipline.testing import inprocess_server, wait_for

# ----------------------------------------------------------- message_received


class Gate:
    """Drops HELLO requests before routing; records everything it sees."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, object]] = []

    @hookimpl
    def message_received(self, ctx):
        msg = ctx.msg
        if isinstance(msg, Request):
            self.seen.append(("request", msg.method))
            if msg.method == "HELLO":
                return ctx.drop()
        else:
            self.seen.append(("response", msg.status))
        return None


class RecordsRoutes:
    def __init__(self) -> None:
        self.requests: list[str] = []
        self.replies: list[int] = []

    @hookimpl
    def route_request(self, ctx):
        self.requests.append(ctx.msg.method)
        return None

    @hookimpl
    def route_reply(self, ctx):
        self.replies.append(ctx.msg.status)
        return None


def test_hook_message_received_drops_request(client_for):
    gate, routes = Gate(), RecordsRoutes()
    with inprocess_server(plugins=[("gate", gate), ("routes", routes)]) as srv:
        client = client_for(srv)
        client.send(sip_request(srv, client, "HELLO"))
        assert_next_answers(client, srv, 200)  # nothing came back for HELLO
        assert gate.seen == [("request", "HELLO"), ("request", "OPTIONS")]
        assert routes.requests == ["OPTIONS"]  # the dropped request was never routed


def test_hook_message_received_sees_responses(client_for):
    gate, routes = Gate(), RecordsRoutes()
    with inprocess_server(plugins=[("gate", gate), ("routes", routes)]) as srv:
        client = client_for(srv)
        client.send(sip_response(client, 180, "Ringing"))
        wait_for(lambda: routes.replies == [180], what="route_reply")
        assert gate.seen == [("response", 180)]  # message_received came first


def test_hook_message_received_runs_before_core_sanity_checks(client_for):
    seen: list[str] = []

    class Sees:
        @hookimpl
        def message_received(self, ctx):
            seen.append(ctx.msg.get("max-forwards"))
            return None

    with inprocess_server(plugins=[("sees", Sees())]) as srv:
        client = client_for(srv)
        answer = client.request(sip_request(srv, client, max_forwards=0))
        assert answer.status == 483  # the core's check, after the hook
        assert seen == ["0"]


def test_hook_message_received_reply_and_stop_on_response(client_for):
    class Answers:
        @hookimpl
        def message_received(self, ctx):
            if isinstance(ctx.msg, Request) and ctx.msg.method == "HELLO":
                return Reply(599, "Go Away")
            if isinstance(ctx.msg, Response):
                return DROP  # any action stops a response here
            return None

    routes = RecordsRoutes()
    with inprocess_server(plugins=[("answers", Answers()), ("routes", routes)]) as srv:
        client = client_for(srv)
        answer = client.request(sip_request(srv, client, "HELLO"))
        assert (answer.status, answer.reason) == (599, "Go Away")
        client.send(sip_response(client))
        assert_next_answers(client, srv, 200)
        assert routes.replies == []  # the response never reached route_reply
        assert routes.requests == ["OPTIONS"]


def test_hook_message_received_awaitable(client_for):
    class Slow:
        @hookimpl
        def message_received(self, ctx):
            if isinstance(ctx.msg, Request) and ctx.msg.method == "HELLO":

                async def check():
                    await asyncio.sleep(0.01)
                    return Reply(403, "Checked And Refused")

                return check()
            return None

    with inprocess_server(plugins=[("slow", Slow())]) as srv:
        client = client_for(srv)
        answer = client.request(sip_request(srv, client, "HELLO"))
        assert (answer.status, answer.reason) == (403, "Checked And Refused")


# ---------------------------------------------------------------- route_reply


class ReplyWatcher:
    def __init__(self, name: str, log: list, result=None) -> None:
        self.name = name
        self.log = log
        self.result = result

    @hookimpl
    def route_reply(self, ctx):
        self.log.append((self.name, ctx.msg, ctx.request, ctx.source.proto))
        return self.result


def test_hook_route_reply_sees_response_and_absorbs_it(client_for):
    log: list = []
    with inprocess_server(plugins=[("watch", ReplyWatcher("watch", log))]) as srv:
        client = client_for(srv)
        client.send(sip_response(client, 486, "Busy Here"))
        wait_for(lambda: len(log) == 1, what="route_reply")
        name, msg, request, proto = log[0]
        assert isinstance(msg, Response)
        assert (msg.status, msg.reason) == (486, "Busy Here")
        assert request is None  # no client transaction matched (none exist yet)
        assert proto == "udp"
        # Absorbed: nothing is sent back or anywhere else.
        assert_next_answers(client, srv, 200)


def test_hook_route_reply_runs_every_implementation(client_for):
    log: list = []
    done: list[str] = []

    class AsyncWatcher:
        @hookimpl
        async def route_reply(self, ctx):  # not firstresult: async def is fine here
            await asyncio.sleep(0)
            done.append("async")

    plugins = [
        ("first", ReplyWatcher("first", log, DROP)),  # a Drop does not stop the others
        ("second", ReplyWatcher("second", log)),
        ("third", AsyncWatcher()),
    ]
    with inprocess_server(plugins=plugins) as srv:
        client = client_for(srv)
        client.send(sip_response(client, 183, "Session Progress"))
        wait_for(lambda: done == ["async"], what="the async route_reply")
        assert [entry[0] for entry in log] == ["first", "second"]


def test_hook_route_reply_exception_is_contained(client_for, caplog):
    class Broken:
        @hookimpl
        def route_reply(self, ctx):
            raise ValueError("bad reply policy")

    caplog.set_level(logging.ERROR, logger="sipline")
    with inprocess_server(plugins=[("broken", Broken())]) as srv:
        client = client_for(srv)
        client.send(sip_response(client))
        assert_next_answers(client, srv, 200)
        assert any("'broken'" in r.getMessage() for r in caplog.records)


# ---------------------------------------------------------------- route_error


def broken_request(srv, client) -> bytes:
    """A request whose CSeq names another method: parseable enough to answer."""
    return sip_request(srv, client).replace(b"CSeq: 1 OPTIONS", b"CSeq: 1 INVITE")


REASON = "CSeq method does not match request method"


def test_hook_route_error_core_default_answers_400(client_for):
    with inprocess_server() as srv:
        client = client_for(srv)
        answer = client.request(broken_request(srv, client))
        assert (answer.status, answer.reason) == (400, REASON)


def test_hook_route_error_context(client_for):
    seen: list = []

    class Looks:
        @hookimpl
        def route_error(self, ctx):
            seen.append((ctx.error, ctx.data, ctx.source.proto))
            return None  # decline: the core default answers

    with inprocess_server(plugins=[("looks", Looks())]) as srv:
        client = client_for(srv)
        data = broken_request(srv, client)
        assert client.request(data).status == 400
        [(error, raw, proto)] = seen
        assert isinstance(error, SipParseError)
        assert (error.status, error.reason) == (400, REASON)
        assert isinstance(error.message, Request)
        assert raw == data
        assert proto == "udp"


def test_hook_route_error_drop_silences(client_for):
    class Silent:
        @hookimpl
        def route_error(self, ctx):
            return ctx.drop()

    with inprocess_server(plugins=[("silent", Silent())]) as srv:
        client = client_for(srv)
        client.send(broken_request(srv, client))
        assert_next_answers(client, srv, 200)  # the broken request got no answer


def test_hook_route_error_custom_reply(client_for):
    class Custom:
        @hookimpl
        def route_error(self, ctx):
            return ctx.reply(400, "Fix Your CSeq")

    with inprocess_server(plugins=[("custom", Custom())]) as srv:
        client = client_for(srv)
        answer = client.request(broken_request(srv, client))
        assert (answer.status, answer.reason) == (400, "Fix Your CSeq")


def test_hook_route_error_broken_response_is_dropped(client_for):
    seen: list = []

    class Looks:
        @hookimpl
        def route_error(self, ctx):
            seen.append(ctx.error.reason)
            return ctx.reply(400, "Never Sent")  # a response cannot be answered

    with inprocess_server(plugins=[("looks", Looks())]) as srv:
        client = client_for(srv)
        broken = sip_response(client).replace(b"CSeq: 1 INVITE\r\n", b"")
        client.send(broken)
        assert_next_answers(client, srv, 200)
        assert seen == ["Missing CSeq header"]
