"""route_branch, route_failure and route_local at the pipeline level.

The proxy core that fires these stages is not built yet, so these tests drive
the real plugin manager and :class:`~sipline.plugins.Pipeline` directly with
real contexts around a real parsed request, exactly as the proxy will.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from hookkit import bare_server

from sipline.hooks import hookimpl
from sipline.plugins import HookError, Pipeline, build_plugin_manager
from sipline.routing.actions import DROP, Drop, Reply
from sipline.routing.context import BranchContext, FailureContext, LocalContext, RequestContext
from sipline.routing.default import CoreDefaults
from sipline.routing.script import load_script
from sipline.sip import Request, Response, parse_message
from sipline.testing import options_request
from sipline.transport import Source

RESPONSE_486 = (
    b"SIP/2.0 486 Busy Here\r\n"
    b"Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKtarget1\r\n"
    b"From: <sip:alice@example.org>;tag=a1\r\n"
    b"To: <sip:bob@example.org>;tag=b2\r\n"
    b"Call-ID: failure-test\r\n"
    b"CSeq: 1 OPTIONS\r\n"
    b"Content-Length: 0\r\n\r\n"
)


def make_pipeline(plugins, script=None) -> Pipeline:
    return Pipeline(build_plugin_manager(plugins, defaults=CoreDefaults(), script=script))


@pytest.fixture
def server():
    return bare_server([])  # configured, never started: only what contexts need


@pytest.fixture
def request_ctx(server) -> RequestContext:
    msg = parse_message(options_request("127.0.0.1:5060", local="127.0.0.1:5070"))
    assert isinstance(msg, Request)
    source = Source("udp", ("127.0.0.1", 5070), ("127.0.0.1", 5060), transport=None)
    return RequestContext(msg, source, server)


def branch_ctx(request_ctx, index=0, target="sip:bob@192.0.2.10") -> BranchContext:
    return BranchContext(request_ctx.msg.copy(), target, index, request_ctx, request_ctx.server)


# ---------------------------------------------------------------- route_branch


class BranchRecorder:
    def __init__(self, name: str, log: list, drop_target: str | None = None) -> None:
        self.name = name
        self.log = log
        self.drop_target = drop_target

    @hookimpl
    def route_branch(self, ctx):
        self.log.append((self.name, ctx.target, ctx.branch_index))
        ctx.msg.set_header(f"X-{self.name}", "seen")
        if ctx.target == self.drop_target:
            return DROP
        return None


def test_hook_route_branch_calls_every_impl_in_order(request_ctx):
    log: list = []
    pipeline = make_pipeline(
        [("a", BranchRecorder("a", log, drop_target="sip:bob@192.0.2.10")), ("b", BranchRecorder("b", log))]
    )
    ctx = branch_ctx(request_ctx)
    results = pipeline.each("route_branch", ctx)
    # Not firstresult: b runs even though a returned Drop; the Drop is collected.
    assert log == [("a", "sip:bob@192.0.2.10", 0), ("b", "sip:bob@192.0.2.10", 0)]
    assert results == [("a", DROP)]
    assert any(isinstance(r, Drop) for _, r in results)
    # The branch copy was modified; the original request was not.
    assert ctx.msg.get("x-a") == "seen" and ctx.msg.get("x-b") == "seen"
    assert request_ctx.msg.get("x-a") is None


def test_hook_route_branch_keeps_branches_apart(request_ctx):
    log: list = []
    pipeline = make_pipeline([("a", BranchRecorder("a", log, drop_target="sip:bob@192.0.2.11"))])
    kept = pipeline.each("route_branch", branch_ctx(request_ctx, 0, "sip:bob@192.0.2.10"))
    dropped = pipeline.each("route_branch", branch_ctx(request_ctx, 1, "sip:bob@192.0.2.11"))
    assert (kept, dropped) == ([], [("a", DROP)])
    assert [entry[2] for entry in log] == [0, 1]


def test_hook_route_branch_sees_request_flags(request_ctx):
    class Flags:
        @hookimpl
        def route_branch(self, ctx):
            return DROP if "no-branch" in ctx.request.flags else None

    pipeline = make_pipeline([("flags", Flags())])
    assert pipeline.each("route_branch", branch_ctx(request_ctx)) == []
    request_ctx.flags.add("no-branch")
    assert pipeline.each("route_branch", branch_ctx(request_ctx)) == [("flags", DROP)]


def test_hook_route_branch_error_names_plugin(request_ctx):
    log: list = []

    class Broken:
        @hookimpl
        def route_branch(self, ctx):
            raise LookupError("no gateway")

    pipeline = make_pipeline([("broken", Broken()), ("after", BranchRecorder("after", log))])
    with pytest.raises(HookError) as info:
        pipeline.each("route_branch", branch_ctx(request_ctx))
    assert (info.value.plugin, info.value.hook) == ("broken", "route_branch")
    assert "'broken'" in str(info.value) and "no gateway" in str(info.value)
    assert isinstance(info.value.exc, LookupError)
    assert log == []


# --------------------------------------------------------------- route_failure


class Failover:
    def __init__(self, name: str, log: list, answer_status: int | None) -> None:
        self.name = name
        self.log = log
        self.answer_status = answer_status

    @hookimpl
    def route_failure(self, ctx):
        self.log.append(self.name)
        if ctx.response.status == self.answer_status:
            return ctx.request.redirect([f"sip:{self.name}@192.0.2.20"])
        return None


def failure_ctx(request_ctx) -> FailureContext:
    response = parse_message(RESPONSE_486)
    assert isinstance(response, Response)
    return FailureContext(request_ctx, response, request_ctx.server)


def test_hook_route_failure_stops_at_first_non_none(request_ctx):
    log: list = []
    pipeline = make_pipeline(
        [
            ("declines", Failover("declines", log, None)),
            ("voicemail", Failover("voicemail", log, 486)),
            ("never", Failover("never", log, 486)),
        ]
    )
    name, action = pipeline.first("route_failure", failure_ctx(request_ctx))
    assert name == "voicemail"
    assert action.contacts == ("sip:voicemail@192.0.2.20",)
    assert log == ["declines", "voicemail"]  # "never" was not asked


def test_hook_route_failure_all_decline(request_ctx):
    log: list = []
    pipeline = make_pipeline([("a", Failover("a", log, 503))])
    # The core default has no route_failure: the best response goes upstream.
    assert pipeline.first("route_failure", failure_ctx(request_ctx)) == ("", None)
    assert log == ["a"]


def test_hook_route_failure_script_first(request_ctx, tmp_path: Path):
    path = tmp_path / "routes.py"
    path.write_text(
        textwrap.dedent(
            """
            from sipline.routing.actions import Reply

            def route_failure(ctx):
                return Reply(480, "Script Says Later")
            """
        )
    )
    log: list = []
    pipeline = make_pipeline([("voicemail", Failover("voicemail", log, 486))], load_script(path))
    name, action = pipeline.first("route_failure", failure_ctx(request_ctx))
    assert (name, action) == ("script", Reply(480, "Script Says Later"))
    assert log == []


def test_hook_route_failure_error_names_plugin(request_ctx):
    class Broken:
        @hookimpl
        def route_failure(self, ctx):
            raise ZeroDivisionError("weights")

    pipeline = make_pipeline([("lb", Broken())])
    with pytest.raises(HookError, match="plugin 'lb' failed in route_failure"):
        pipeline.first("route_failure", failure_ctx(request_ctx))


# ----------------------------------------------------------------- route_local


def local_ctx(server) -> LocalContext:
    probe = parse_message(options_request("192.0.2.30:5060", local="127.0.0.1:5060"))
    return LocalContext(probe, ("udp", "192.0.2.30", 5060), server)


def test_hook_route_local_calls_every_impl(server):
    log: list = []

    class AddsHeader:
        @hookimpl
        def route_local(self, ctx):
            log.append(("adds", ctx.destination))
            ctx.msg.set_header("X-Probe", "sipline")
            return None

    class Maintenance:
        @hookimpl
        def route_local(self, ctx):
            log.append(("maintenance", ctx.msg.get("x-probe")))
            return DROP if ctx.destination[1] == "192.0.2.30" else None

    pipeline = make_pipeline([("adds", AddsHeader()), ("maintenance", Maintenance())])
    ctx = local_ctx(server)
    assert pipeline.each("route_local", ctx) == [("maintenance", DROP)]
    # In order, and the second saw the first one's change.
    assert log == [("adds", ("udp", "192.0.2.30", 5060)), ("maintenance", "sipline")]
    assert b"X-Probe: sipline" in ctx.msg.to_bytes()


def test_hook_route_local_no_impl_sends(server):
    # Without any implementation the request goes out: nothing collected.
    assert make_pipeline([]).each("route_local", local_ctx(server)) == []


def test_hook_route_local_error_names_plugin(server):
    class Broken:
        @hookimpl
        def route_local(self, ctx):
            raise RuntimeError("no route")

    with pytest.raises(HookError) as info:
        make_pipeline([("broken", Broken())]).each("route_local", local_ctx(server))
    assert info.value.plugin == "broken"
