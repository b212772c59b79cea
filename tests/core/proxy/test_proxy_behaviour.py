"""Proxy core behaviours with raw loopback peers: best response, challenges, strict routing,
double Record-Route, stateless forwarding (RFC 3261 §16)."""

from __future__ import annotations

import socket
import textwrap
import time
import uuid
from pathlib import Path

import pytest

from sipline.hooks import hookimpl
from sipline.routing.script import load_script
from sipline.sip import make_response, parse_message
from sipline.testing import SipClient, free_port, inprocess_server


class Peer:
    """A raw UDP (or TCP listening) socket acting as a UAS behind the proxy."""

    def __init__(self, proto: str = "udp") -> None:
        self.proto = proto
        kind = socket.SOCK_DGRAM if proto == "udp" else socket.SOCK_STREAM
        self.sock = socket.socket(socket.AF_INET, kind)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(3)
        if proto == "tcp":
            self.sock.listen(1)
        self.port = self.sock.getsockname()[1]
        self.uri = f"sip:uas@127.0.0.1:{self.port}" + (";transport=tcp" if proto == "tcp" else "")
        self.conn: socket.socket | None = None

    def receive(self, method: str = "INVITE"):
        while True:
            if self.proto == "udp":
                data, addr = self.sock.recvfrom(65535)
            else:
                if self.conn is None:
                    self.conn, _ = self.sock.accept()
                    self.conn.settimeout(3)
                data, addr = self.conn.recv(65535), None
            msg = parse_message(data, stream=self.proto == "tcp")
            if getattr(msg, "method", None) == method:
                return msg, addr

    def answer(self, msg, addr, status: int, headers=()) -> None:
        reply = make_response(msg, status, to_tag=f"t{self.port}", headers=list(headers))
        if self.proto == "udp":
            self.sock.sendto(reply.to_bytes(), addr)
        else:
            assert self.conn is not None
            self.conn.sendall(reply.to_bytes())

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
        self.sock.close()


@pytest.fixture
def peers():
    made: list[Peer] = []

    def make(proto: str = "udp") -> Peer:
        p = Peer(proto)
        made.append(p)
        return p

    yield make
    for p in made:
        p.close()


def script(tmp_path: Path, body: str):
    path = tmp_path / f"routes_{uuid.uuid4().hex[:6]}.py"
    path.write_text(textwrap.dedent(body))
    return load_script(path)


def request(client: SipClient, method: str = "INVITE", ruri: str | None = None, extra: str = "") -> bytes:
    host, port = client.server
    ruri = ruri or f"sip:svc@{host}:{port}"
    return (
        f"{method} {ruri} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {client.local_hostport};branch=z9hG4bK{uuid.uuid4().hex[:10]};rport\r\n"
        "Max-Forwards: 70\r\n"
        f"From: <sip:caller@{host}>;tag=c1\r\n"
        f"To: <sip:svc@{host}>\r\n"
        f"Call-ID: {uuid.uuid4().hex}\r\n"
        f"CSeq: 1 {method}\r\n"
        f"Contact: <sip:caller@{client.local_hostport}>\r\n"
        f"{extra}"
        "Content-Length: 0\r\n\r\n"
    ).encode()


def final(client: SipClient):
    while True:
        msg = parse_message(client.recv(3))
        if msg.status >= 200:
            return msg


def test_best_response_prefers_lowest_class_and_hides_503(tmp_path, peers):
    a, b = peers(), peers()
    plugin = script(tmp_path, f"""
        def route_request(ctx):
            if ctx.msg.method == "INVITE":
                return ctx.relay("{a.uri}", "{b.uri}")
    """)
    with inprocess_server(script=plugin) as srv:
        client = SipClient(srv.address())
        client.send(request(client))
        ma, aa = a.receive()
        mb, ab = b.receive()
        a.answer(ma, aa, 503)
        b.answer(mb, ab, 404)
        assert final(client).status == 404
        # a single 503 becomes 500 upstream (§16.7 step 6)
        client.send(request(client))
        ma, aa = a.receive()
        mb, ab = b.receive()
        a.answer(ma, aa, 503)
        b.answer(mb, ab, 503)
        got = final(client)
        assert got.status == 500
        client.close()


def test_challenges_of_all_branches_are_aggregated(tmp_path, peers):
    a, b = peers(), peers()
    plugin = script(tmp_path, f"""
        def route_request(ctx):
            if ctx.msg.method == "INVITE":
                return ctx.relay("{a.uri}", "{b.uri}")
    """)
    with inprocess_server(script=plugin) as srv:
        client = SipClient(srv.address())
        client.send(request(client))
        ma, aa = a.receive()
        mb, ab = b.receive()
        a.answer(ma, aa, 407, [("Proxy-Authenticate", 'Digest realm="a", nonce="1"')])
        b.answer(mb, ab, 401, [("WWW-Authenticate", 'Digest realm="b", nonce="2"')])
        got = final(client)
        assert got.status in (401, 407)
        assert got.get_all("Proxy-Authenticate") == ['Digest realm="a", nonce="1"']
        assert got.get_all("WWW-Authenticate") == ['Digest realm="b", nonce="2"']
        client.close()


def test_strict_router_next_hop_gets_the_route_in_the_request_uri(tmp_path, peers):
    a = peers()
    plugin = script(tmp_path, """
        def route_request(ctx):
            if ctx.msg.method == "INVITE":
                ctx.loose_route()
                return ctx.relay()
    """)
    with inprocess_server(script=plugin) as srv:
        client = SipClient(srv.address())
        original = "sip:bob@example.org"
        client.send(request(client, ruri=original, extra=f"Route: <sip:127.0.0.1:{a.port}>\r\n"))
        got, addr = a.receive()
        assert got.raw_uri == f"sip:127.0.0.1:{a.port}"
        assert got.get_list("Route")[-1] == f"<{original}>"
        a.answer(got, addr, 486)
        assert final(client).status == 486
        client.close()


def test_double_record_route_when_changing_transport(tmp_path, peers):
    tcp_peer = peers("tcp")
    port = free_port()
    plugin = script(tmp_path, f"""
        def route_request(ctx):
            if ctx.msg.method == "INVITE":
                ctx.record_route()
                return ctx.relay("{tcp_peer.uri}")
    """)
    toml = {"server": {"listen": [f"udp:127.0.0.1:{port}", f"tcp:127.0.0.1:{port}"]}}
    with inprocess_server(toml, script=plugin) as srv:
        client = SipClient(srv.address())
        client.send(request(client))
        got, _ = tcp_peer.receive()
        rr = got.get_list("Record-Route")
        assert rr == [f"<sip:127.0.0.1:{port};transport=tcp;lr>", f"<sip:127.0.0.1:{port};lr>"]
        assert got.top_via.transport == "TCP"
        tcp_peer.answer(got, None, 200, [("Record-Route", v) for v in rr])  # a UAS copies them
        ok = final(client)
        assert ok.status == 200 and ok.get_list("Record-Route") == rr
        client.close()


def test_stateless_forward_routes_the_answer_by_via(tmp_path, peers):
    a = peers()
    plugin = script(tmp_path, f"""
        def route_request(ctx):
            if ctx.msg.method == "MESSAGE":
                ctx.set_ruri("{a.uri}")
                return ctx.forward()
    """)
    with inprocess_server(script=plugin) as srv:
        client = SipClient(srv.address())
        data = request(client, "MESSAGE")
        client.send(data)
        got, addr = a.receive("MESSAGE")
        assert len(got.via) == 2
        # a retransmission is forwarded again with the same branch (§16.11)
        client.send(data)
        again, _ = a.receive("MESSAGE")
        assert again.top_via.branch == got.top_via.branch
        a.answer(got, addr, 202)
        answer = parse_message(client.recv(3))
        assert answer.status == 202 and len(answer.via) == 1
        assert len(srv.server.proxy.layer) == 0  # no transaction was created
        client.close()


def test_ruri_uri_follows_the_rewritten_request_uri(tmp_path):
    plugin = script(tmp_path, """
        from sipline.routing.actions import Reply

        def route_request(ctx):
            before = ctx.ruri_uri
            ctx.set_ruri("sip:alice@example.org:5070")
            after = ctx.ruri_uri
            return Reply(480, "Seen", (
                ("X-Before", f"{before.user}@{before.host}:{before.port}"),
                ("X-Same", str(before is ctx.msg.uri)),
                ("X-After", f"{after.user}@{after.host}:{after.port}"),
            ))
    """)
    with inprocess_server(script=plugin) as srv:
        client = SipClient(srv.address())
        host, port = client.server
        client.send(request(client, "MESSAGE"))
        answer = final(client)
        assert answer.status == 480
        assert answer.get("X-Before") == f"svc@{host}:{port}"
        assert answer.get("X-Same") == "True"  # the parsed R-URI of the message, not a copy
        assert answer.get("X-After") == "alice@example.org:5070"
        client.close()


class LocalRoute:
    """A route_local hook: marks every request sipline originates."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, tuple[str, str, int]]] = []

    @hookimpl
    def route_local(self, ctx):
        self.seen.append((ctx.msg.method, ctx.destination))
        ctx.msg.add_header("X-Local", "yes")


def test_hook_route_local_sees_the_proxys_own_cancel(tmp_path, peers):
    ringing, answering = peers(), peers()
    plugin = script(tmp_path, f"""
        def route_request(ctx):
            if ctx.msg.method == "INVITE":
                return ctx.relay("{ringing.uri}", "{answering.uri}")
    """)
    local = LocalRoute()
    with inprocess_server(plugins=[("local", local)], script=plugin) as srv:
        client = SipClient(srv.address())
        client.send(request(client))
        mr, ar = ringing.receive()
        ma, aa = answering.receive()
        ringing.answer(mr, ar, 180)
        answering.answer(ma, aa, 200)
        cancel, _ = ringing.receive("CANCEL")
        assert cancel.get("X-Local") == "yes"
        assert cancel.get("Reason").startswith("SIP;cause=200")
        assert local.seen == [("CANCEL", ("udp", "127.0.0.1", ringing.port))]
        assert final(client).status == 200
        client.close()


def test_record_route_params_come_back_in_route_params(tmp_path, peers):
    a = peers()
    plugin = script(tmp_path, f"""
        def route_request(ctx):
            if ctx.msg.to.tag:
                routed = ctx.loose_route()
                seen = repr((routed, ctx.own_route, sorted(ctx.route_params.items())))
                return ctx.reply(200, "OK", [("X-Seen", seen)])
            if ctx.msg.method == "INVITE":
                ctx.record_route(";did=d1")
                ctx.add_rr_param("flag")
                return ctx.relay("{a.uri}")
    """)
    with inprocess_server(script=plugin) as srv:
        client = SipClient(srv.address())
        client.send(request(client))
        msg, addr = a.receive()
        rr = msg.get_all("record-route")
        assert len(rr) == 1 and rr[0].endswith(";lr;did=d1;flag>"), rr
        a.answer(msg, addr, 486)
        assert final(client).status == 486
        # The in-dialog request brings our Record-Route back as its Route.
        bye = request(client, "BYE", extra=f"Route: {rr[0]}\r\n").decode().split("\r\n")
        text = [line + ";tag=t9" if line.startswith("To:") else line for line in bye]
        client.send("\r\n".join(text).encode())
        ok = final(client)
        assert ok.status == 200
        assert ok.get("x-seen") == repr(
            (True, True, [("did", "d1"), ("flag", None), ("lr", None)]))
        client.close()


def test_add_rr_param_rejects_what_would_break_the_header(tmp_path):
    plugin = script(tmp_path, """
        def route_request(ctx):
            if ctx.msg.method != "OPTIONS":
                return None
            ctx.add_rr_param("a=1")
            refused = 0
            for bad in (";a=<x>", ";a=1,b", "; a"):
                try:
                    ctx.add_rr_param(bad)
                except ValueError:
                    refused += 1
            return ctx.reply(200, "OK", [("X-Params", ctx.rr_params), ("X-Refused", str(refused))])
    """)
    with inprocess_server(script=plugin) as srv:
        client = SipClient(srv.address())
        client.send(request(client, "OPTIONS"))
        got = final(client)
        client.close()
    assert (got.get("x-params"), got.get("x-refused")) == (";a=1", "3")


def test_route_reply_sees_the_transaction_vars(tmp_path, peers):
    a = peers()
    plugin = script(tmp_path, f"""
        def route_request(ctx):
            if ctx.msg.method == "INVITE":
                ctx.vars["dialog"] = "d7"
                ctx.flags.add("traced")
                return ctx.relay("{a.uri}")

        def route_reply(ctx):
            ctx.msg.add_header("X-Seen", f"{{ctx.vars.get('dialog')}} {{sorted(ctx.flags)}}")
    """)
    with inprocess_server(script=plugin) as srv:
        client = SipClient(srv.address())
        client.send(request(client))
        msg, addr = a.receive()
        a.answer(msg, addr, 486)
        got = final(client)
        assert got.status == 486 and got.get("x-seen") == "d7 ['traced']"
        client.close()


def test_own_route_params_fast_reading():
    from sipline.routing.context import _own_route_params

    prefixes = ("<sip:192.0.2.1:5060;lr",)
    assert _own_route_params("<sip:192.0.2.1:5060;lr;did=a1;x>", prefixes) == {
        "lr": None, "did": "a1", "x": None}
    for other in ("<sip:192.0.2.1:5060;lr>",  # exact: the caller's set handles it
                  "<sip:192.0.2.1:50600;lr;did=1>",  # another port
                  "<sip:192.0.2.1:5060;lr;did=1>, <sip:x>",  # two entries in one line
                  "<sip:192.0.2.1:5060;lr;did=1?h=v>",  # URI headers: the careful path
                  "<sip:192.0.2.9:5060;lr;did=1>"):
        assert _own_route_params(other, prefixes) is None, other


class FinalWatcher:
    """Relays INVITEs (serial forking on 503) and records what ctx.on_final reports."""

    def __init__(self, first: str, second: str) -> None:
        self.first, self.second = first, second
        self.seen: list[tuple[str, int]] = []

    @hookimpl
    def route_request(self, ctx):
        if ctx.msg.method != "INVITE":
            return None
        if ctx.msg.uri.user == "local":
            ctx.on_final(lambda r: self.seen.append(("local", r.status)))
            return ctx.reply(486, "Busy Here")
        ctx.on_final(lambda r: self.seen.append(("relayed", r.status)))
        ctx.on_final(lambda r: 1 / 0)  # a failing callback does not stop the others
        ctx.on_final(lambda r: self.seen.append(("second", r.status)))
        ctx.on_failure(lambda f: f.relay(self.second) if f.response.status == 503 else None)
        return ctx.relay(self.first)


def test_on_final_reports_the_response_that_went_upstream_once(peers):
    a, b = peers(), peers()
    watcher = FinalWatcher(a.uri, b.uri)
    with inprocess_server(plugins=[("watcher", watcher)]) as srv:
        client = SipClient(srv.address())
        client.send(request(client))
        ma, aa = a.receive()
        a.answer(ma, aa, 503)  # serial forking: the failure handler goes on to b
        mb, ab = b.receive()
        b.answer(mb, ab, 404)
        assert final(client).status == 404
        client.send(request(client, ruri=f"sip:local@{srv.address()[0]}:{srv.address()[1]}"))
        assert final(client).status == 486
        client.close()
        deadline = time.monotonic() + 2  # the callbacks run right after the send
        while len(watcher.seen) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert watcher.seen == [("relayed", 404), ("second", 404), ("local", 486)]


def test_relay_errors_are_distinct_members():
    from sipline.proxy import RelayError

    members = list(RelayError)
    assert len(members) == len(RelayError.__members__) == 8  # no member is an alias
    assert RelayError.SEND_FAILED is not RelayError.UNRESOLVABLE
    assert (RelayError.NO_TRANSPORT.status, RelayError.NO_TRANSPORT.reason) == (
        503, "Service Unavailable")
    assert RelayError.TRANSACTION_EXISTS.status == 0
