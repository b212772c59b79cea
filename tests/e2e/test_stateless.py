"""The core alone (no plugins): stateless RFC 3261 behaviour of a real server process."""

from __future__ import annotations

import signal
import socket
import uuid

import pytest

from sipline.sip import parse_message
from sipline.testing import (
    ServerProcess,
    SipClient,
    free_port,
    hostport,
    ipv6_available,
    options_request,
)


@pytest.fixture(scope="module")
def server(tmp_path_factory, ports):
    listen = [f'"udp:127.0.0.1:{ports["v4"]}"', f'"tcp:127.0.0.1:{ports["v4"]}"']
    if "v6" in ports:
        listen += [f'"udp:[::1]:{ports["v6"]}"', f'"tcp:[::1]:{ports["v6"]}"']
    config = f"""
[server]
listen = [{", ".join(listen)}]
domains = ["sipline.test"]
tcp_max_connections = 50
"""
    proc = ServerProcess(config, tmp_path_factory.mktemp("stateless"))
    proc.start(probe=("127.0.0.1", ports["v4"]))
    yield proc
    assert proc.stop() == 0, proc.log()


@pytest.fixture
def client(server, ports):
    clients = []

    def make(proto="udp", family="v4"):
        host = "127.0.0.1" if family == "v4" else "::1"
        c = SipClient((host, ports[family]), proto)
        clients.append(c)
        return c

    yield make
    for c in clients:
        c.close()


def request(
    client: SipClient,
    method: str = "OPTIONS",
    ruri: str | None = None,
    *,
    extra: str = "",
    version: str = "SIP/2.0",
    cseq_method: str | None = None,
    max_forwards: str = "70",
    rport: bool = True,
) -> bytes:
    server = hostport(*client.server)
    ruri = ruri or f"sip:{server}"
    proto = "UDP" if client.proto == "udp" else "TCP"
    return (
        f"{method} {ruri} {version}\r\n"
        f"Via: SIP/2.0/{proto} {client.local_hostport};branch=z9hG4bK{uuid.uuid4().hex[:12]}"
        f"{';rport' if rport else ''}\r\n"
        f"Max-Forwards: {max_forwards}\r\n"
        f"From: <sip:alice@sipline.test>;tag=a{uuid.uuid4().hex[:6]}\r\n"
        f"To: <{ruri if ruri.startswith('sip') else 'sip:bob@sipline.test'}>\r\n"
        f"Call-ID: {uuid.uuid4().hex}@test\r\n"
        f"CSeq: 7 {cseq_method or method}\r\n"
        f"{extra}"
        "Content-Length: 0\r\n\r\n"
    ).encode()


TRANSPORTS = [("udp", "v4"), ("tcp", "v4"), ("udp", "v6"), ("tcp", "v6")]


@pytest.mark.parametrize(("proto", "family"), TRANSPORTS)
def test_options_to_server_answers_200(client, proto, family):
    if family == "v6" and not ipv6_available():
        pytest.skip("IPv6 loopback is not available on this machine")
    c = client(proto, family)
    resp = c.request(request(c))
    assert resp.status == 200
    for name in ("Allow", "Accept", "Supported"):
        assert resp.has(name), name
    assert "OPTIONS" in resp.get("Allow")
    assert resp.to.tag, "responses carry a To-tag"
    assert resp.get("Server").startswith("sipline/")
    via = resp.top_via
    assert via.received == c.local[0] or via.host.strip("[]") == c.local[0]
    if proto == "udp":
        assert via.rport == str(c.local[1])


def test_to_tag_is_stable_for_retransmissions(client):
    c = client()
    msg = request(c)
    first = c.request(msg)
    second = c.request(msg)
    assert first.to.tag == second.to.tag
    other = c.request(request(c))
    assert other.to.tag != first.to.tag


def test_options_to_a_user_is_not_found(client):
    c = client()
    resp = c.request(request(c, ruri="sip:nobody@sipline.test"))
    assert resp.status == 404


def test_invite_for_foreign_domain_is_relay_forbidden(client):
    c = client()
    resp = c.request(request(c, "INVITE", "sip:carol@elsewhere.example"))
    assert (resp.status, resp.reason) == (403, "Relay forbidden")


def test_bad_version_is_505(client):
    c = client()
    resp = c.request(request(c, version="SIP/3.0"))
    assert resp.status == 505


def test_unknown_uri_scheme_is_416(client):
    c = client()
    resp = c.request(request(c, ruri="nobodyKnowsThisScheme:opaque"))
    assert resp.status == 416


def test_max_forwards_zero_is_483(client):
    c = client()
    resp = c.request(request(c, "INVITE", "sip:bob@elsewhere.example", max_forwards="0"))
    assert resp.status == 483


def test_unknown_require_is_420_with_unsupported(client):
    c = client()
    resp = c.request(request(c, extra="Require: foo, 100rel-x\r\n"))
    assert resp.status == 420
    assert resp.get_list("Unsupported") == ["foo", "100rel-x"]


def test_unknown_proxy_require_is_420(client):
    c = client()
    resp = c.request(request(c, "INVITE", "sip:x@elsewhere.example", extra="Proxy-Require: bar\r\n"))
    assert resp.status == 420
    assert resp.get("Unsupported") == "bar"


def test_unknown_method_is_501(client):
    c = client()
    resp = c.request(request(c, "FROBNICATE"))
    assert resp.status == 501
    assert "OPTIONS" in resp.get("Allow")


def test_malformed_request_gets_400_with_reason(client):
    c = client()
    resp = c.request(request(c, cseq_method="INVITE"))
    assert resp.status == 400
    assert "CSeq" in resp.reason
    # the 400 copies the broken CSeq verbatim (RFC 3261 §8.2.6.2), so read it raw
    c.send(request(c).replace(b"CSeq: 7 OPTIONS", b"CSeq: 99999999999999999999 OPTIONS"))
    assert c.recv().startswith(b"SIP/2.0 400 Bad CSeq")


def test_ack_and_stray_response_get_no_answer(client):
    c = client()
    c.send(request(c, "ACK"))
    assert c.expect_silence(0.3)
    c.send(
        b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP " + c.local_hostport.encode()
        + b";branch=z9hG4bKstray\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:b@c>;tag=2\r\n"
        b"Call-ID: stray\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    )
    assert c.expect_silence(0.3)


def test_garbage_never_kills_the_server(client):
    c = client()
    for junk in (b"\x00" * 100, b"INVITE\r\n\r\n", b"SIP/2.0\r\n", b"\xff\xfe" * 3000, b"A" * 65000):
        c.send(junk)
    # none of these has a readable Via: nothing can be answered
    assert c.expect_silence(0.5)
    assert c.request(request(c)).status == 200


def test_tcp_broken_framing_closes_only_that_connection(client):
    bad = client("tcp")
    bad.send(request(bad).replace(b"Content-Length: 0", b"Content-Length: -5"))
    with pytest.raises((ConnectionError, OSError)):
        bad.recv(2)
        bad.recv(2)
    good = client("tcp")
    assert good.request(request(good)).status == 200


def test_tcp_keepalive_ping_gets_pong(client):
    c = client("tcp")
    c.send(b"\r\n\r\n")
    assert c.sock.recv(16) == b"\r\n"
    assert c.request(request(c)).status == 200


def test_tcp_pipelined_requests_are_all_answered(client):
    c = client("tcp")
    msgs = [request(c) for _ in range(5)]
    c.send(b"".join(msgs))
    statuses = [parse_message(c.recv(), stream=True).status for _ in range(5)]
    assert statuses == [200] * 5


def test_limits_and_signals(tmp_path):
    port = free_port()
    config = f"""
[server]
listen = ["udp:127.0.0.1:{port}", "tcp:127.0.0.1:{port}"]
tcp_max_connections = 2
tcp_idle_timeout = 0.6
max_message_size = 4096
"""
    proc = ServerProcess(config, tmp_path).start(probe=("127.0.0.1", port))
    try:
        a = SipClient(("127.0.0.1", port), "tcp")
        b = SipClient(("127.0.0.1", port), "tcp")
        for c in (a, b):
            assert c.request(options_request(f"127.0.0.1:{port}", local=c.local_hostport, transport="TCP")).status == 200
        third = SipClient(("127.0.0.1", port), "tcp")
        with pytest.raises((ConnectionError, OSError)):
            third.send(options_request(f"127.0.0.1:{port}", local=third.local_hostport, transport="TCP"))
            third.recv(2)
        # idle connections are closed by the sweeper
        with pytest.raises((ConnectionError, OSError)):
            a.recv(6)
        for c in (a, b, third):
            c.close()
        u = SipClient(("127.0.0.1", port))
        big = options_request(f"127.0.0.1:{port}", local=u.local_hostport, extra="X-Pad: " + "p" * 8000 + "\r\n")
        u.send(big)
        try:
            assert parse_message(u.recv(0.5)).status == 513
        except (TimeoutError, socket.timeout):
            pass  # dropping is as acceptable as 513
        assert u.request(options_request(f"127.0.0.1:{port}", local=u.local_hostport)).status == 200
        u.close()
    finally:
        code = proc.stop(signal.SIGINT)
    assert code == 0, proc.log()
