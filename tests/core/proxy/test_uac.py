"""Requests sipline originates (Server.send_request): transaction, route_local, local 408/503."""

from __future__ import annotations

import asyncio
import socket
import time

import pytest

from sipline.hooks import hookimpl
from sipline.proxy import LocalRequestError, build_request
from sipline.routing.actions import DROP
from sipline.sip import make_response, parse_message
from sipline.testing import free_port, inprocess_server


class Peer:
    """A raw UDP socket acting as the far end."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(3)
        self.port = self.sock.getsockname()[1]
        self.uri = f"sip:peer@127.0.0.1:{self.port}"

    def receive(self):
        data, addr = self.sock.recvfrom(65535)
        return parse_message(data), addr

    def answer(self, msg, addr, status: int) -> None:
        self.sock.sendto(make_response(msg, status, to_tag="p1").to_bytes(), addr)

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def peer():
    p = Peer()
    yield p
    p.close()


def options(peer: Peer):
    return build_request("OPTIONS", peer.uri, from_uri="sip:probe@127.0.0.1")


def test_build_request_is_a_valid_request_without_via():
    req = build_request("BYE", "sip:bob@192.0.2.1", from_uri="sip:alice@192.0.2.2",
                        to_uri="sip:bob@example.org", call_id="c1", cseq=7, from_tag="f",
                        to_tag="t", headers=[("Route", "<sip:192.0.2.9;lr>")], body=b"hi")
    assert (req.method, req.call_id, req.cseq.seq, req.cseq.method) == ("BYE", "c1", 7, "BYE")
    assert req.from_.tag == "f" and req.to.tag == "t"
    assert req.get_all("via") == [] and req.max_forwards == 70
    assert [str(r.uri) for r in req.routes] == ["sip:192.0.2.9;lr"]
    assert req.body == b"hi"
    random_ids = build_request("OPTIONS", "sip:x@192.0.2.1", from_uri="sip:y@192.0.2.2")
    other = build_request("OPTIONS", "sip:x@192.0.2.1", from_uri="sip:y@192.0.2.2")
    assert random_ids.call_id != other.call_id and random_ids.from_.tag != other.from_.tag


def test_options_gets_the_final_response_of_the_peer(peer):
    with inprocess_server() as srv:
        result = asyncio.run_coroutine_threadsafe(
            srv.server.send_request(options(peer)), srv.loop)
        msg, addr = peer.receive()
        assert msg.method == "OPTIONS"
        via = msg.top_via
        assert via.branch.startswith("z9hG4bK") and via.port == srv.address()[1]
        assert addr == srv.address()  # it left through the listener
        peer.sock.sendto(make_response(msg, 100).to_bytes(), addr)  # provisional: ignored
        peer.answer(msg, addr, 404)
        response = result.result(5)
        assert response.status == 404 and response.to.tag == "p1"


def test_retransmitted_until_answered(peer):
    with inprocess_server({"proxy": {"t1": 0.05}}) as srv:
        result = asyncio.run_coroutine_threadsafe(
            srv.server.send_request(options(peer)), srv.loop)
        first, _ = peer.receive()
        again, addr = peer.receive()  # Timer E: the same request once more
        assert again.top_via.branch == first.top_via.branch
        peer.answer(again, addr, 200)
        assert result.result(5).status == 200


def test_no_answer_gives_a_local_408_after_timer_f(peer):
    with inprocess_server({"proxy": {"t1": 0.01, "t2": 0.04}}) as srv:
        t0 = time.monotonic()
        response = srv.call(srv.server.send_request(options(peer)), timeout=10)
        assert response.status == 408
        assert time.monotonic() - t0 >= 64 * 0.01 * 0.9  # Timer F = 64*T1


def test_explicit_destination_wins_over_the_ruri(peer):
    with inprocess_server() as srv:
        req = build_request("OPTIONS", "sip:someone@192.0.2.77", from_uri="sip:probe@127.0.0.1")
        result = asyncio.run_coroutine_threadsafe(
            srv.server.send_request(req, f"sip:127.0.0.1:{peer.port}"), srv.loop)
        msg, addr = peer.receive()
        assert msg.raw_uri == "sip:someone@192.0.2.77"
        peer.answer(msg, addr, 200)
        assert result.result(5).status == 200


class Veto:
    def __init__(self) -> None:
        self.seen = []

    @hookimpl
    def route_local(self, ctx):
        self.seen.append((ctx.msg.method, ctx.destination))
        return DROP if ctx.msg.method == "MESSAGE" else None


def test_route_local_sees_every_local_request_and_may_drop_it(peer):
    veto = Veto()
    with inprocess_server(plugins=[("veto", veto)]) as srv:
        result = asyncio.run_coroutine_threadsafe(
            srv.server.send_request(options(peer)), srv.loop)
        msg, addr = peer.receive()
        peer.answer(msg, addr, 200)
        assert result.result(5).status == 200
        message = build_request("MESSAGE", peer.uri, from_uri="sip:probe@127.0.0.1")
        with pytest.raises(LocalRequestError, match="route_local"):
            srv.call(srv.server.send_request(message))
        peer.sock.settimeout(0.3)
        with pytest.raises(socket.timeout):
            peer.receive()  # nothing left for the vetoed one
    assert veto.seen == [("OPTIONS", ("udp", "127.0.0.1", peer.port)),
                         ("MESSAGE", ("udp", "127.0.0.1", peer.port))]


@pytest.mark.parametrize("method", ["INVITE", "ACK", "CANCEL"])
def test_invite_ack_cancel_are_refused(method):
    with inprocess_server() as srv:
        req = build_request(method, "sip:x@127.0.0.1:5", from_uri="sip:probe@127.0.0.1")
        with pytest.raises(LocalRequestError, match=method):
            srv.call(srv.server.send_request(req))


def test_unresolvable_and_unroutable_next_hops_raise():
    with inprocess_server() as srv:
        req = build_request("OPTIONS", "sip:x@name.invalid", from_uri="sip:probe@127.0.0.1")
        with pytest.raises(LocalRequestError, match="does not resolve"):
            srv.call(srv.server.send_request(req), timeout=15)
        req = build_request("OPTIONS", "sip:x@127.0.0.1:5", from_uri="sip:probe@127.0.0.1")
        with pytest.raises(LocalRequestError, match="no such listener"):
            srv.call(srv.server.send_request(req, "sip:[::1]:5"))
        req = build_request("OPTIONS", "sip:x@127.0.0.1:5", from_uri="sip:probe@127.0.0.1")
        with pytest.raises(LocalRequestError, match="not a sip"):
            srv.call(srv.server.send_request(req, "tel:+123"))


def test_tcp_destination(peer):
    port = free_port()
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    listener.settimeout(3)
    tcp_port = listener.getsockname()[1]
    toml = {"server": {"listen": [f"udp:127.0.0.1:{port}", f"tcp:127.0.0.1:{port}"]}}
    try:
        with inprocess_server(toml) as srv:
            req = build_request("OPTIONS", f"sip:x@127.0.0.1:{tcp_port};transport=tcp",
                                from_uri="sip:probe@127.0.0.1")
            result = asyncio.run_coroutine_threadsafe(srv.server.send_request(req), srv.loop)
            conn, _ = listener.accept()
            conn.settimeout(3)
            data = b""
            while b"\r\n\r\n" not in data:
                data += conn.recv(65535)
            msg = parse_message(data, stream=True)
            assert msg.top_via.transport == "TCP"
            conn.sendall(make_response(msg, 200).to_bytes())
            assert result.result(5).status == 200
            conn.close()
    finally:
        listener.close()


def test_timeout_abandons_the_transaction(peer):
    with inprocess_server({"proxy": {"t1": 0.05}}) as srv:
        t0 = time.monotonic()
        response = srv.call(srv.server.send_request(options(peer), timeout=0.3))
        assert response.status == 408 and time.monotonic() - t0 < 2
        first, _ = peer.receive()
        assert first.method == "OPTIONS"
        peer.sock.settimeout(0.05)
        try:
            while True:  # drain what was sent before the timeout
                peer.receive()
        except socket.timeout:
            pass
        peer.sock.settimeout(0.6)
        with pytest.raises(socket.timeout):
            peer.receive()  # abandoned: no retransmission after it
        assert len(srv.server.proxy.layer) == 0
