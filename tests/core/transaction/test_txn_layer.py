"""The transaction layer: tables, matching, removal on termination, bounded memory."""

from __future__ import annotations

import random
from typing import Any

import pytest

from txnkit import AckRecorder, Recorder, Wire, ack_for, reply, request

from sipline.sip import Response
from sipline.sip.requests import make_cancel
from sipline.transaction import (
    FakeClock,
    InviteClientTransaction,
    InviteServerTransaction,
    NonInviteClientTransaction,
    NonInviteServerTransaction,
    State,
    TimerConfig,
    TransactionLayer,
    server_key,
)


@pytest.fixture
def layer(clock: FakeClock) -> TransactionLayer:
    return TransactionLayer(clock)


def test_empty_layer(layer: TransactionLayer) -> None:
    assert len(layer) == 0
    assert layer.server_count == 0 and layer.client_count == 0
    assert layer.find_server(request("INVITE")) is None
    assert layer.find_client(reply(request("INVITE"), 200)) is None
    assert layer.find_invite_for_cancel(make_cancel(request("INVITE"))) is None
    assert "servers=0" in repr(layer)


def test_server_invite_matching_and_removal(
    layer: TransactionLayer, clock: FakeClock, wire: Wire, tu: Recorder
) -> None:
    invite = request("INVITE")
    txn = layer.create_server(invite, wire, False, tu)
    assert isinstance(txn, InviteServerTransaction)
    assert len(layer) == 1 and layer.server_count == 1
    # A retransmission finds it.
    assert layer.find_server(request("INVITE")) is txn
    # Same branch from another sender does not.
    assert layer.find_server(request("INVITE", host="10.9.9.9")) is None
    final = reply(invite, 486)
    txn.send_response(final)
    # The ACK of the non-2xx belongs to the INVITE transaction.
    ack = ack_for(invite, final)
    assert layer.find_server(ack) is txn
    txn.receive_request(ack)
    clock.advance(5)  # Timer I
    assert txn.state is State.TERMINATED
    assert len(layer) == 0
    assert layer.find_server(ack) is None
    assert tu.names == ["terminated"]  # the TU is still told


def test_ack_for_2xx_does_not_match(layer: TransactionLayer, wire: Wire, tu: Recorder) -> None:
    txn = layer.create_server(request("INVITE", branch="z9hG4bK-inv"), wire, False, tu)
    txn.send_response(reply(txn.request, 200))
    # An RFC 3261 ACK for a 2xx has a branch of its own: a new (stateless) request.
    assert layer.find_server(request("ACK", branch="z9hG4bK-ack", to_tag="b1")) is None


def test_cancel_matching(layer: TransactionLayer, wire: Wire, tu: Recorder) -> None:
    invite = request("INVITE")
    inv_txn = layer.create_server(invite, wire, False, tu)
    cancel = make_cancel(invite)
    # The CANCEL is not a retransmission of anything...
    assert layer.find_server(cancel) is None
    # ...but it points at the INVITE transaction.
    assert layer.find_invite_for_cancel(cancel) is inv_txn
    cancel_txn = layer.create_server(cancel, wire, False, tu)
    assert isinstance(cancel_txn, NonInviteServerTransaction)
    assert layer.find_server(make_cancel(invite)) is cancel_txn
    assert layer.server_count == 2
    # A CANCEL for a non-INVITE transaction finds no INVITE.
    options = request("OPTIONS", branch="z9hG4bK-opt")
    layer.create_server(options, wire, False, tu)
    assert layer.find_invite_for_cancel(make_cancel(options)) is None


def test_fallback_ack_matching_by_response_to_tag(
    layer: TransactionLayer, wire: Wire, tu: Recorder
) -> None:
    invite = request("INVITE", branch=None)
    txn = layer.create_server(invite, wire, False, tu)
    assert layer.find_server(request("INVITE", branch=None)) is txn
    final = reply(invite, 404, to_tag="uas-tag")
    early_ack = ack_for(invite, final)
    # No final response sent yet: the ACK acknowledges nothing here.
    assert layer.find_server(early_ack) is None
    txn.send_response(final)
    assert layer.find_server(ack_for(invite, final)) is txn
    # An ACK with another To tag acknowledges another response.
    assert layer.find_server(ack_for(invite, reply(invite, 404, to_tag="other"))) is None


def test_fallback_ack_for_2xx_reaches_the_tu_in_accepted(
    layer: TransactionLayer, wire: Wire, ack_tu: AckRecorder
) -> None:
    invite = request("INVITE", branch=None)
    txn = layer.create_server(invite, wire, False, ack_tu)
    txn.send_response(reply(invite, 200, to_tag="t2"))
    ack = request("ACK", branch=None, to_tag="t2")
    found = layer.find_server(ack)
    assert found is txn
    assert found.receive_request(ack) is True
    assert ack_tu.events == [("ack", "ACK")]


def test_fallback_ack_inside_a_dialog(layer: TransactionLayer, wire: Wire, tu: Recorder) -> None:
    reinvite = request("INVITE", branch=None, to_tag="dlg", cseq=2)
    txn = layer.create_server(reinvite, wire, False, tu)
    final = reply(reinvite, 491)
    txn.send_response(final)
    assert layer.find_server(ack_for(reinvite, final)) is txn


def test_fallback_cancel(layer: TransactionLayer, wire: Wire, tu: Recorder) -> None:
    invite = request("INVITE", branch=None)
    txn = layer.create_server(invite, wire, False, tu)
    cancel = make_cancel(invite)
    assert layer.find_server(cancel) is None
    assert layer.find_invite_for_cancel(cancel) is txn


def test_client_matching_and_removal(
    layer: TransactionLayer, clock: FakeClock, wire: Wire, tu: Recorder
) -> None:
    invite = request("INVITE", branch="z9hG4bK-out1")
    txn = layer.create_client(invite, wire, False, tu)
    assert isinstance(txn, InviteClientTransaction)
    txn.start()
    assert layer.client_count == 1
    assert layer.find_client(reply(invite, 180)) is txn
    cancel = make_cancel(invite)
    cancel_txn = layer.create_client(cancel, wire, False, tu)
    assert isinstance(cancel_txn, NonInviteClientTransaction)
    cancel_txn.start()
    # The CANCEL's response goes to the CANCEL transaction, the INVITE's to the INVITE's.
    assert layer.find_client(reply(cancel, 200)) is cancel_txn
    assert layer.find_client(reply(invite, 487)) is txn
    assert layer.find_client(reply(request("INVITE", branch="z9hG4bK-other"), 200)) is None
    assert layer.find_client(reply(request("INVITE", branch=None), 200)) is None
    cancel_txn.receive_response(reply(cancel, 200))
    txn.receive_response(reply(invite, 487))
    clock.advance(32)
    assert len(layer) == 0


def test_add_rules(layer: TransactionLayer, clock: FakeClock, wire: Wire, tu: Recorder) -> None:
    invite = request("INVITE")
    txn = InviteServerTransaction(invite, server_key(invite), wire, False, clock,
                                  TimerConfig(), tu)
    assert layer.add_server(txn) is True
    assert layer.add_server(txn) is True  # idempotent
    twin = InviteServerTransaction(invite, server_key(invite), wire, False, clock,
                                   TimerConfig(), tu)
    with pytest.raises(ValueError):
        layer.add_server(twin)
    other = TransactionLayer(clock)
    with pytest.raises(ValueError):
        other.add_server(txn)  # already registered elsewhere
    dead = InviteServerTransaction(request("INVITE", branch="z9hG4bK-x"),
                                   server_key(request("INVITE", branch="z9hG4bK-x")),
                                   wire, False, clock, TimerConfig(), tu)
    dead.terminate()
    assert layer.add_server(dead) is False
    assert layer.server_count == 1
    with pytest.raises(ValueError):
        layer.create_server(request("ACK"), wire, False, tu)


def test_trying_failure_is_not_registered(
    layer: TransactionLayer, wire: Wire, tu: Recorder
) -> None:
    wire.fail = True
    txn = layer.create_server(request("INVITE"), wire, False, tu)
    assert txn.state is State.TERMINATED
    assert len(layer) == 0
    assert tu.names == ["transport_error", "terminated"]


def test_terminate_all(layer: TransactionLayer, clock: FakeClock, wire: Wire, tu: Recorder) -> None:
    layer.create_server(request("INVITE", branch="z9hG4bK-1"), wire, False, tu)
    layer.create_server(request("OPTIONS", branch="z9hG4bK-2"), wire, False, tu)
    layer.create_client(request("BYE", branch="z9hG4bK-3"), wire, False, tu).start()
    assert len(layer) == 3
    assert layer.terminate_all() == 3
    assert len(layer) == 0
    assert clock.pending == 0
    assert tu.names == ["terminated"] * 3


def test_timer_values_come_from_the_layer(clock: FakeClock, wire: Wire, tu: Recorder) -> None:
    layer = TransactionLayer(clock, TimerConfig(t1=0.25, max_lifetime=None))
    txn = layer.create_client(request("OPTIONS"), wire, False, tu)
    txn.start()
    clock.advance(15.9)
    assert layer.client_count == 1
    clock.advance(0.1)  # F = 64 * 0.25
    assert layer.client_count == 0
    assert tu.names == ["timeout", "terminated"]


# -- a stateful proxy in miniature: server and client transactions together ----------------


class ProxyTU:
    """Forwards each request on a client transaction and each response back upstream."""

    def __init__(self, layer: TransactionLayer, downstream: Wire, reliable: bool) -> None:
        self.layer = layer
        self.downstream = downstream
        self.reliable = reliable
        self.pairs: dict[Any, Any] = {}
        self.timeouts = 0
        self.terminated = 0
        self.errors = 0

    def on_request(self, server: Any) -> None:
        out = server.request.copy()
        out.push_via(f"SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK-p{id(server)}")
        client = self.layer.create_client(out, self.downstream, self.reliable, self)
        self.pairs[client] = server
        client.start()

    def on_response(self, client: Any, response: Response) -> None:
        up = response.copy()
        up.pop_via()
        server = self.pairs[client]
        if response.status > 100:  # a proxy does not forward 100 (Trying), §16.7 step 5
            server.send_response(up)

    def on_timeout(self, client: Any) -> None:
        self.timeouts += 1
        from sipline.sip import make_response

        self.pairs[client].send_response(make_response(self.pairs[client].request, 408))

    def on_terminated(self, txn: Any) -> None:
        self.terminated += 1
        self.pairs.pop(txn, None)

    def on_transport_error(self, txn: Any) -> None:
        self.errors += 1

    def on_ack_timeout(self, txn: Any) -> None:
        pass


def test_thousand_transactions_leave_nothing_behind(clock: FakeClock) -> None:
    rng = random.Random(3261)
    layer = TransactionLayer(clock, TimerConfig(max_lifetime=600))
    upstream = Wire(clock)
    downstream = Wire(clock)
    tus = {r: ProxyTU(layer, downstream, r) for r in (False, True)}
    outcomes: dict[str, int] = {}
    forever = 0
    live_clients = []
    n = 1000
    for i in range(n):
        reliable = bool(i % 3 == 0)
        tu = tus[reliable]
        method = "INVITE" if i % 2 else rng.choice(["OPTIONS", "BYE", "REGISTER", "MESSAGE"])
        req = request(method, branch=f"z9hG4bK-up{i}", call_id=f"c{i}", cseq=i + 1)
        # Some arrive twice (an upstream retransmission).
        server = layer.find_server(req)
        assert server is None
        server = layer.create_server(req, upstream, reliable, tu)
        assert layer.find_server(request(method, branch=f"z9hG4bK-up{i}", call_id=f"c{i}",
                                         cseq=i + 1)) is server
        tu.on_request(server)
        client = next(c for c, s in tu.pairs.items() if s is server)
        live_clients.append((client, server, method))
        clock.advance(rng.choice([0.0, 0.001, 0.01]))

    for client, server, method in live_clients:
        fate = rng.choice(["ok", "fail", "timeout", "ring-ok", "ring-fail", "ring-forever"])
        outcomes[fate] = outcomes.get(fate, 0) + 1
        if client.terminated:
            continue
        req = client.request
        if fate == "timeout":
            continue
        if fate.startswith("ring"):
            client.receive_response(reply(req, 180 if method == "INVITE" else 100))
            if method == "INVITE":
                # An upstream INVITE retransmission is answered with the last provisional.
                assert layer.find_server(server.request) is server
        if fate == "ring-forever":
            # No final and no Timer C: only max_lifetime (or Timer F) ends these.
            forever += method == "INVITE"
            continue
        final = reply(req, 200 if fate.endswith("ok") else 486)
        found = layer.find_client(final)
        assert found is client
        found.receive_response(final)
        found.receive_response(final)  # a retransmission
        if method == "INVITE" and final.status >= 300 and not server.terminated:
            # The upstream UAC ACKs the forwarded non-2xx on the server transaction.
            upstream_final = server.last_response
            ack = ack_for(server.request, upstream_final)
            assert layer.find_server(ack) is server
            server.receive_request(ack)

    # Past Timers B, D, F, H, J, K, L, M: only the INVITEs that ring forever are left, a
    # server and a client transaction each, until max_lifetime.
    clock.advance(100)
    assert forever > 0
    assert layer.server_count == layer.client_count == forever
    clock.advance(600)  # past every timer, including Timer B/F/H and max_lifetime
    assert len(layer) == 0, layer
    assert layer.server_count == 0 and layer.client_count == 0
    assert clock.pending == 0
    assert sum(tu.terminated for tu in tus.values()) == 2 * n
    assert all(not tu.pairs for tu in tus.values())
    assert sum(tu.timeouts for tu in tus.values()) > 0
    assert set(outcomes) == {"ok", "fail", "timeout", "ring-ok", "ring-fail", "ring-forever"}


def test_slim_releases_messages_only_in_wait_states():
    from sipline.sip import make_response
    from sipline.transaction import FakeClock, NonInviteServerTransaction, TimerConfig
    from sipline.transaction.keys import server_key
    from sipline.sip import parse_message

    raw = (
        b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKslim\r\n"
        b"From: <sip:c@d>;tag=1\r\nTo: <sip:a@b>\r\nCall-ID: slim\r\nCSeq: 1 OPTIONS\r\n"
        b"Content-Length: 0\r\n\r\n"
    )
    req = parse_message(raw)
    sent: list[bytes] = []

    class User:
        def on_terminated(self, txn): pass
        def on_transport_error(self, txn): pass
        def on_ack_timeout(self, txn): pass

    clock = FakeClock()
    txn = NonInviteServerTransaction(
        req, server_key(req), lambda d: sent.append(d) or True, False, clock, TimerConfig(), User()
    )
    assert txn.slim() is False and txn.request is req  # Trying: still needed
    txn.send_response(make_response(req, 200, to_tag="x"))
    assert txn.slim() is True
    assert txn.request is None and txn.last_response is None
    assert "OPTIONS" in repr(txn)
    # a retransmission is still answered from the kept bytes
    txn.receive_request(parse_message(raw))
    assert sent[-1] == sent[0]
