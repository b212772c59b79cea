"""Client transactions: RFC 3261 §17.1.1 / §17.1.2 with RFC 6026."""

from __future__ import annotations

from typing import Any

import pytest

from txnkit import AckRecorder, Recorder, Wire, reply, request

from sipline.sip import Request, Response, parse_message
from sipline.transaction import (
    FakeClock,
    InviteClientTransaction,
    NonInviteClientTransaction,
    State,
    TimerConfig,
)

# Timer A: T1 doubling without cap, until Timer B at 64*T1 = 32 s.
A_TIMES = [0.0, 0.5, 1.5, 3.5, 7.5, 15.5, 31.5]
# Timer E in Trying: T1 doubling up to T2 = 4 s, until Timer F at 32 s.
E_TIMES = [0.0, 0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]


def ict(
    clock: FakeClock,
    wire: Wire,
    tu: Any,
    *,
    reliable: bool = False,
    timers: TimerConfig | None = None,
    **kw: Any,
) -> InviteClientTransaction:
    kw.setdefault("routes", ("<sip:proxy.example.com;lr>",))
    txn = InviteClientTransaction(
        request("INVITE", **kw), wire, reliable, clock, timers or TimerConfig(), tu
    )
    return txn


def nict(
    clock: FakeClock,
    wire: Wire,
    tu: Any,
    *,
    reliable: bool = False,
    method: str = "BYE",
    timers: TimerConfig | None = None,
) -> NonInviteClientTransaction:
    return NonInviteClientTransaction(
        request(method, to_tag="b1"), wire, reliable, clock, timers or TimerConfig(), tu
    )


# -- INVITE client: Calling, Timers A and B ----------------------------------------------------


def test_invite_client_timer_a_doubles_then_timer_b(
    clock: FakeClock, wire: Wire, tu: Recorder
) -> None:
    txn = ict(clock, wire, tu)
    assert txn.state is State.CALLING
    assert txn.key == ("z9hG4bK-b1", "INVITE")
    assert txn.start() is True
    clock.advance(31.9)
    assert wire.times == A_TIMES
    assert len({id(d) for _, d in wire.sent}) == 1  # serialised once
    assert wire.sent[0][1] == txn.request.to_bytes()
    assert tu.events == []
    clock.advance(0.1)  # Timer B
    assert txn.state is State.TERMINATED
    assert tu.names == ["timeout", "terminated"]
    assert clock.pending == 0


def test_invite_client_reliable_no_timer_a(clock: FakeClock, wire: Wire, tu: Recorder) -> None:
    txn = ict(clock, wire, tu, reliable=True)
    txn.start()
    clock.advance(31.9)
    assert wire.times == [0.0]
    clock.advance(0.1)
    assert tu.names == ["timeout", "terminated"]


def test_invite_client_start_twice_refused(clock: FakeClock, wire: Wire, tu: Recorder) -> None:
    txn = ict(clock, wire, tu)
    assert not txn.started
    txn.start()
    assert txn.started
    with pytest.raises(RuntimeError):
        txn.start()


def test_invite_client_refuses_other_methods(clock: FakeClock, wire: Wire, tu: Recorder) -> None:
    with pytest.raises(ValueError):
        InviteClientTransaction(request("BYE"), wire, False, clock, TimerConfig(), tu)


# -- INVITE client: Proceeding -----------------------------------------------------------------


def test_invite_client_provisional_stops_a_and_b(
    clock: FakeClock, wire: Wire, tu: Recorder
) -> None:
    txn = ict(clock, wire, tu)
    txn.start()
    clock.advance(0.6)  # one retransmission
    txn.receive_response(reply(txn.request, 100, to_tag=None))
    assert txn.state is State.PROCEEDING
    txn.receive_response(reply(txn.request, 180))
    txn.receive_response(reply(txn.request, 180))
    assert tu.events == [("response", 100), ("response", 180), ("response", 180)]
    clock.advance(300)  # no more Timer A, and Timer B does not end Proceeding
    assert wire.times == [0.0, 0.5]
    assert txn.state is State.PROCEEDING
    assert clock.pending == 1  # only the max_lifetime safety limit


def test_invite_client_proceeding_lifetime_limit(
    clock: FakeClock, wire: Wire, ack_tu: AckRecorder
) -> None:
    txn = ict(clock, wire, ack_tu, timers=TimerConfig(max_lifetime=600))
    txn.start()
    clock.advance(1)
    txn.receive_response(reply(txn.request, 183))
    clock.advance(599.9)
    assert txn.state is State.PROCEEDING
    clock.advance(0.1)  # counted from the provisional response
    assert txn.state is State.TERMINATED
    assert ack_tu.names == ["response", "lifetime_expired", "terminated"]
    assert clock.pending == 0


def test_invite_client_proceeding_without_lifetime_limit(
    clock: FakeClock, wire: Wire, tu: Recorder
) -> None:
    txn = ict(clock, wire, tu, timers=TimerConfig(max_lifetime=None))
    txn.start()
    txn.receive_response(reply(txn.request, 180))
    assert clock.pending == 0
    txn.terminate()
    assert tu.names == ["response", "terminated"]


# -- INVITE client: 2xx, Accepted, Timer M (RFC 6026) ----------------------------------------


@pytest.mark.parametrize("provisional", [False, True])
def test_invite_client_2xx_accepted_timer_m(
    clock: FakeClock, wire: Wire, tu: Recorder, provisional: bool
) -> None:
    txn = ict(clock, wire, tu)
    txn.start()
    if provisional:
        txn.receive_response(reply(txn.request, 180))
    clock.advance(1.0)
    txn.receive_response(reply(txn.request, 200))
    assert txn.state is State.ACCEPTED
    # Every 2xx (retransmission or another fork) goes to the TU; nothing is ACKed here.
    txn.receive_response(reply(txn.request, 200))
    txn.receive_response(reply(txn.request, 200, to_tag="fork2"))
    # Other responses are ignored in Accepted.
    txn.receive_response(reply(txn.request, 183))
    txn.receive_response(reply(txn.request, 486))
    sent_before = list(wire.sent)
    expected = [("response", 180)] if provisional else []
    assert tu.events == expected + [("response", 200)] * 3
    clock.advance(31.9)
    assert wire.sent == sent_before  # no ACK, no retransmission
    assert txn.state is State.ACCEPTED
    clock.advance(0.1)  # Timer M = 64*T1
    assert txn.state is State.TERMINATED
    assert tu.names[-1] == "terminated"
    assert clock.pending == 0
    assert txn.ack is None


def test_invite_client_accepted_timer_m_reliable(
    clock: FakeClock, wire: Wire, tu: Recorder
) -> None:
    txn = ict(clock, wire, tu, reliable=True)
    txn.start()
    txn.receive_response(reply(txn.request, 200))
    clock.advance(31.9)
    assert txn.state is State.ACCEPTED
    clock.advance(0.1)
    assert txn.state is State.TERMINATED


# -- INVITE client: non-2xx, Completed, ACK, Timer D -------------------------------------------


@pytest.mark.parametrize("provisional", [False, True])
def test_invite_client_non_2xx_acks_and_timer_d(
    clock: FakeClock, wire: Wire, tu: Recorder, provisional: bool
) -> None:
    txn = ict(clock, wire, tu)
    txn.start()
    if provisional:
        txn.receive_response(reply(txn.request, 180, to_tag="b7"))
    final = reply(txn.request, 486, to_tag="b7")
    txn.receive_response(final)
    assert txn.state is State.COMPLETED
    assert tu.events[-1] == ("response", 486)
    assert wire.first_lines()[-1] == "ACK sip:bob@example.com SIP/2.0"
    ack = parse_message(wire.sent[-1][1])
    assert isinstance(ack, Request)
    invite = txn.request
    # §17.1.1.3
    assert ack.raw_uri == invite.raw_uri
    assert ack.call_id == invite.call_id
    assert ack.get("From") == invite.get("From")
    assert ack.get("To") == final.get("To") and ack.to.tag == "b7"
    assert ack.get_all("Via") == [invite.get("Via")]
    assert (ack.cseq.seq, ack.cseq.method) == (invite.cseq.seq, "ACK")
    assert ack.get_all("Route") == ["<sip:proxy.example.com;lr>"]
    assert txn.ack is not None and txn.ack.to_bytes() == wire.sent[-1][1]

    # A retransmitted final: the ACK is re-sent (same bytes), the TU does not see it again.
    n = len(tu.events)
    txn.receive_response(reply(txn.request, 486, to_tag="b7"))
    assert len(tu.events) == n
    assert wire.sent[-1][1] is wire.sent[-2][1]
    # Provisional and 2xx responses are ignored in Completed.
    txn.receive_response(reply(txn.request, 180))
    txn.receive_response(reply(txn.request, 200))
    assert len(tu.events) == n
    sent = len(wire.sent)
    clock.advance(31.9)
    assert len(wire.sent) == sent  # no Timer A any more
    assert txn.state is State.COMPLETED
    clock.advance(0.1)  # Timer D = 32 s
    assert txn.state is State.TERMINATED
    assert tu.names[-1] == "terminated"
    assert clock.pending == 0


def test_invite_client_reliable_timer_d_zero(clock: FakeClock, wire: Wire, tu: Recorder) -> None:
    txn = ict(clock, wire, tu, reliable=True)
    txn.start()
    txn.receive_response(reply(txn.request, 404))
    assert wire.first_lines()[-1].startswith("ACK ")
    assert txn.state is State.TERMINATED
    assert tu.names == ["response", "terminated"]
    assert clock.pending == 0


def test_invite_client_timer_d_is_configurable(
    clock: FakeClock, wire: Wire, tu: Recorder
) -> None:
    txn = ict(clock, wire, tu, timers=TimerConfig(d=40))
    txn.start()
    txn.receive_response(reply(txn.request, 503))
    clock.advance(39.9)
    assert txn.state is State.COMPLETED
    clock.advance(0.1)
    assert txn.state is State.TERMINATED


def test_invite_client_response_without_to_is_dropped(
    clock: FakeClock, wire: Wire, tu: Recorder, caplog: pytest.LogCaptureFixture
) -> None:
    txn = ict(clock, wire, tu)
    txn.start()
    data = reply(txn.request, 486).to_bytes()
    lines = [line for line in data.split(b"\r\n") if not line.startswith(b"To:")]
    broken = parse_message(b"\r\n".join(lines))
    assert isinstance(broken, Response)
    txn.receive_response(broken)
    assert txn.state is State.CALLING
    assert tu.events == []
    assert "cannot be acknowledged" in caplog.text


# -- INVITE client: transport errors -----------------------------------------------------------


def test_invite_client_transport_error_on_start(
    clock: FakeClock, wire: Wire, tu: Recorder
) -> None:
    wire.fail = True
    txn = ict(clock, wire, tu)
    assert txn.start() is False
    assert txn.state is State.TERMINATED
    assert tu.names == ["transport_error", "terminated"]
    assert clock.pending == 0


def test_invite_client_transport_error_on_timer_a(
    clock: FakeClock, wire: Wire, tu: Recorder
) -> None:
    txn = ict(clock, wire, tu)
    txn.start()
    wire.fail = True
    clock.advance(0.5)
    assert txn.state is State.TERMINATED
    assert tu.names == ["transport_error", "terminated"]
    assert clock.pending == 0


def test_invite_client_transport_error_on_ack(clock: FakeClock, wire: Wire, tu: Recorder) -> None:
    txn = ict(clock, wire, tu)
    txn.start()
    wire.fail = True
    txn.receive_response(reply(txn.request, 486))
    # The TU hears the response before the failed ACK is reported.
    assert tu.names == ["response", "transport_error", "terminated"]
    assert clock.pending == 0


def test_invite_client_terminates_even_if_the_tu_raises(
    clock: FakeClock, wire: Wire
) -> None:
    class Raising(Recorder):
        def on_response(self, txn: Any, response: Response) -> None:
            super().on_response(txn, response)
            raise RuntimeError("TU bug")

    tu = Raising()
    txn = ict(clock, wire, tu, reliable=True)
    txn.start()
    with pytest.raises(RuntimeError):
        txn.receive_response(reply(txn.request, 486))
    assert txn.state is State.TERMINATED
    assert wire.first_lines()[-1].startswith("ACK ")
    assert clock.pending == 0


# -- non-INVITE client -------------------------------------------------------------------------


def test_non_invite_client_timer_e_doubles_to_t2_then_timer_f(
    clock: FakeClock, wire: Wire, tu: Recorder
) -> None:
    txn = nict(clock, wire, tu)
    assert txn.state is State.TRYING
    assert txn.key == ("z9hG4bK-b1", "BYE")
    txn.start()
    clock.advance(31.9)
    assert wire.times == E_TIMES
    assert len({id(d) for _, d in wire.sent}) == 1
    clock.advance(0.1)  # Timer F
    assert txn.state is State.TERMINATED
    assert tu.names == ["timeout", "terminated"]
    assert clock.pending == 0


def test_non_invite_client_timer_e_cap_with_other_timers(
    clock: FakeClock, wire: Wire, tu: Recorder
) -> None:
    txn = nict(clock, wire, tu, timers=TimerConfig(t1=0.125, t2=0.5))
    txn.start()
    clock.advance(2.4)
    gaps = [b - a for a, b in zip(wire.times, wire.times[1:])]
    assert gaps == [0.125, 0.25, 0.5, 0.5, 0.5, 0.5]
    clock.advance(5.5)
    assert txn.state is State.TRYING
    clock.advance(0.1)  # F = 64*T1 = 8 s
    assert tu.names == ["timeout", "terminated"]


def test_non_invite_client_proceeding_timer_e_at_t2(
    clock: FakeClock, wire: Wire, tu: Recorder
) -> None:
    txn = nict(clock, wire, tu)
    txn.start()
    clock.advance(0.2)
    txn.receive_response(reply(txn.request, 100))
    assert txn.state is State.PROCEEDING
    txn.receive_response(reply(txn.request, 180))
    assert tu.events == [("response", 100), ("response", 180)]
    clock.advance(9.0)
    # The pending Timer E fires at 0.5 s as scheduled, then every T2.
    assert wire.times == [0.0, 0.5, 4.5, 8.5]
    clock.advance(22.8)  # Timer F still ends Proceeding at 32 s
    assert txn.state is State.TERMINATED
    assert tu.names[-2:] == ["timeout", "terminated"]
    assert clock.pending == 0


@pytest.mark.parametrize("provisional", [False, True])
def test_non_invite_client_completed_timer_k(
    clock: FakeClock, wire: Wire, tu: Recorder, provisional: bool
) -> None:
    txn = nict(clock, wire, tu)
    txn.start()
    if provisional:
        txn.receive_response(reply(txn.request, 100))
    clock.advance(1.0)
    txn.receive_response(reply(txn.request, 200))
    assert txn.state is State.COMPLETED
    # Retransmissions of the final (and anything else) are absorbed.
    txn.receive_response(reply(txn.request, 200))
    txn.receive_response(reply(txn.request, 100))
    expected = [("response", 100)] if provisional else []
    assert tu.events == expected + [("response", 200)]
    sent = len(wire.sent)
    clock.advance(4.9)
    assert len(wire.sent) == sent  # Timer E stopped
    assert txn.state is State.COMPLETED
    clock.advance(0.1)  # Timer K = T4
    assert txn.state is State.TERMINATED
    assert tu.names[-1] == "terminated"
    assert clock.pending == 0


def test_non_invite_client_reliable(clock: FakeClock, wire: Wire, tu: Recorder) -> None:
    txn = nict(clock, wire, tu, reliable=True)
    txn.start()
    clock.advance(10)
    assert wire.times == [0.0]  # no Timer E
    txn.receive_response(reply(txn.request, 481))
    # Timer K is zero: Completed ends at once.
    assert txn.state is State.TERMINATED
    assert tu.names == ["response", "terminated"]
    assert clock.pending == 0


def test_non_invite_client_reliable_timer_f(clock: FakeClock, wire: Wire, tu: Recorder) -> None:
    txn = nict(clock, wire, tu, reliable=True)
    txn.start()
    clock.advance(32)
    assert tu.names == ["timeout", "terminated"]


def test_non_invite_client_transport_error_on_timer_e(
    clock: FakeClock, wire: Wire, tu: Recorder
) -> None:
    txn = nict(clock, wire, tu)
    txn.start()
    wire.fail = True
    clock.advance(0.5)
    assert txn.state is State.TERMINATED
    assert tu.names == ["transport_error", "terminated"]
    assert clock.pending == 0
    with pytest.raises(RuntimeError):
        txn.start()


@pytest.mark.parametrize("method", ["INVITE", "ACK"])
def test_non_invite_client_refuses_invite_and_ack(
    clock: FakeClock, wire: Wire, tu: Recorder, method: str
) -> None:
    with pytest.raises(ValueError):
        nict(clock, wire, tu, method=method)


def test_client_needs_a_branch(clock: FakeClock, wire: Wire, tu: Recorder) -> None:
    with pytest.raises(ValueError):
        NonInviteClientTransaction(
            request("OPTIONS", branch=None), wire, False, clock, TimerConfig(), tu
        )
