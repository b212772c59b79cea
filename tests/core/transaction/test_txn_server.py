"""Server transactions: RFC 3261 §17.2.1 / §17.2.2 with RFC 6026."""

from __future__ import annotations

from typing import Any

import pytest

from txnkit import AckRecorder, Recorder, Wire, ack_for, reply, request

from sipline.transaction import (
    FakeClock,
    InviteServerTransaction,
    NonInviteServerTransaction,
    State,
    TimerConfig,
    server_key,
)

# Timer G intervals with the defaults: T1, 2*T1, 4*T1, then T2 (4 s) until Timer H at 64*T1.
G_TIMES = [0.0, 0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]


def ist(
    clock: FakeClock,
    wire: Wire,
    tu: Any,
    *,
    reliable: bool = False,
    trying: bool = True,
    trying_after: float = 0.0,
    timers: TimerConfig | None = None,
    **kw: Any,
) -> InviteServerTransaction:
    invite = request("INVITE", **kw)
    return InviteServerTransaction(
        invite, server_key(invite), wire, reliable, clock, timers or TimerConfig(), tu,
        trying=trying, trying_after=trying_after,
    )


def nist(
    clock: FakeClock,
    wire: Wire,
    tu: Any,
    *,
    reliable: bool = False,
    method: str = "OPTIONS",
    timers: TimerConfig | None = None,
) -> NonInviteServerTransaction:
    req = request(method)
    return NonInviteServerTransaction(
        req, server_key(req), wire, reliable, clock, timers or TimerConfig(), tu
    )


def statuses(wire: Wire) -> list[int]:
    return [m.status for m in wire.messages]  # type: ignore[union-attr]


# -- INVITE server: Proceeding -----------------------------------------------------------------


def test_invite_server_sends_100_trying_at_once(clock: FakeClock, wire: Wire, tu: Recorder) -> None:
    txn = ist(clock, wire, tu, extra=("Timestamp: 54.3",))
    assert txn.state is State.PROCEEDING
    assert txn.is_invite and txn.is_server
    assert statuses(wire) == [100]
    trying = wire.messages[0]
    assert trying.to.tag is None  # §17.2.1: no To tag in the 100
    assert trying.get("Timestamp") == "54.3"  # §8.2.6.1
    assert txn.last_response is not None and txn.last_response.status == 100


def test_deferred_trying_goes_out_when_the_tu_is_silent(
    clock: FakeClock, wire: Wire, tu: Recorder
) -> None:
    txn = ist(clock, wire, tu, trying_after=0.2)
    clock.advance(0.199)
    assert wire.sent == []
    clock.advance(0.001)
    assert statuses(wire) == [100]
    assert txn.last_response is not None and txn.last_response.status == 100
    clock.advance(10)
    assert statuses(wire) == [100]  # once
    txn.receive_request(request("INVITE"))
    assert statuses(wire) == [100, 100]  # and re-sent for a retransmission


def test_deferred_trying_is_not_sent_after_a_tu_response(
    clock: FakeClock, wire: Wire, tu: Recorder
) -> None:
    txn = ist(clock, wire, tu, trying_after=0.2)
    clock.advance(0.05)
    assert txn.send_response(reply(txn.request, 180)) is True
    clock.advance(1)
    assert statuses(wire) == [180]
    # A final response first: the 200 ends Proceeding, no 100 follows either.
    wire2 = Wire(clock)
    txn2 = ist(clock, wire2, tu, trying_after=0.2, branch="z9hG4bK-2")
    assert txn2.send_response(reply(txn2.request, 486)) is True
    clock.advance(0.3)
    assert [m.status for m in wire2.messages][:1] == [486]
    assert 100 not in [m.status for m in wire2.messages]


def test_deferred_trying_is_sent_at_once_for_a_retransmission(
    clock: FakeClock, wire: Wire, tu: Recorder
) -> None:
    txn = ist(clock, wire, tu, trying_after=0.2)
    clock.advance(0.1)
    assert txn.receive_request(request("INVITE")) is True
    assert statuses(wire) == [100]
    clock.advance(1)
    assert statuses(wire) == [100]  # the timer does not send a second one


def test_invite_server_without_trying_sends_nothing(
    clock: FakeClock, wire: Wire, tu: Recorder
) -> None:
    txn = ist(clock, wire, tu, trying=False)
    assert wire.sent == []
    # A retransmission with nothing to re-send is absorbed.
    assert txn.receive_request(txn.request) is True
    assert wire.sent == []
    assert txn.state is State.PROCEEDING


def test_invite_server_retransmission_resends_last_provisional(
    clock: FakeClock, wire: Wire, tu: Recorder
) -> None:
    txn = ist(clock, wire, tu)
    assert txn.receive_request(request("INVITE")) is True
    assert statuses(wire) == [100, 100]
    assert txn.send_response(reply(txn.request, 180)) is True
    assert txn.state is State.PROCEEDING
    txn.receive_request(request("INVITE"))
    assert statuses(wire) == [100, 100, 180, 180]
    # The re-sent bytes are those first sent, not a re-serialisation.
    assert wire.sent[-1][1] is wire.sent[-2][1]
    assert tu.events == []


def test_invite_server_provisionals_are_not_retransmitted_by_timers(
    clock: FakeClock, wire: Wire, tu: Recorder
) -> None:
    txn = ist(clock, wire, tu)
    txn.send_response(reply(txn.request, 183))
    clock.advance(120)
    assert statuses(wire) == [100, 183]
    assert txn.state is State.PROCEEDING


# -- INVITE server: non-2xx final, Completed, Timers G and H ---------------------------------


def test_invite_server_non_2xx_timer_g_then_h(clock: FakeClock, wire: Wire, tu: Recorder) -> None:
    txn = ist(clock, wire, tu, trying=False)
    assert txn.send_response(reply(txn.request, 486)) is True
    assert txn.state is State.COMPLETED
    clock.advance(31.9)
    assert wire.times == G_TIMES
    assert statuses(wire) == [486] * len(G_TIMES)
    assert len({id(data) for _, data in wire.sent}) == 1  # serialised once
    assert tu.events == []
    clock.advance(0.1)  # Timer H = 64*T1
    assert txn.state is State.TERMINATED
    assert tu.names == ["ack_timeout", "terminated"]
    assert clock.pending == 0


def test_invite_server_timer_g_caps_at_t2_with_other_timers(
    clock: FakeClock, wire: Wire, tu: Recorder
) -> None:
    timers = TimerConfig(t1=0.125, t2=0.375)
    txn = ist(clock, wire, tu, trying=False, timers=timers)
    txn.send_response(reply(txn.request, 500))
    clock.advance(1.25)
    gaps = [b - a for a, b in zip(wire.times, wire.times[1:])]
    assert gaps == [0.125, 0.25, 0.375, 0.375]
    clock.advance(6.7)
    assert txn.state is State.COMPLETED
    clock.advance(0.05)  # H = 64*T1 = 8 s
    assert txn.state is State.TERMINATED


def test_invite_server_completed_resends_final_on_retransmission(
    clock: FakeClock, wire: Wire, tu: Recorder
) -> None:
    txn = ist(clock, wire, tu)
    txn.send_response(reply(txn.request, 404))
    wire.clear()
    assert txn.receive_request(request("INVITE")) is True
    assert statuses(wire) == [404]


def test_invite_server_ack_moves_to_confirmed_and_timer_i(
    clock: FakeClock, wire: Wire, tu: Recorder
) -> None:
    txn = ist(clock, wire, tu)
    final = reply(txn.request, 603)
    txn.send_response(final)
    clock.advance(0.7)  # one G retransmission
    sent = len(wire.sent)
    assert txn.receive_request(ack_for(txn.request, final)) is True
    assert txn.state is State.CONFIRMED
    # Timer G stopped, ACK and INVITE retransmissions absorbed without sending.
    assert txn.receive_request(ack_for(txn.request, final)) is True
    assert txn.receive_request(request("INVITE")) is True
    clock.advance(4.9)
    assert len(wire.sent) == sent
    assert txn.state is State.CONFIRMED
    clock.advance(0.1)  # Timer I = T4 after the ACK at 0.7 s
    assert txn.state is State.TERMINATED
    assert tu.names == ["terminated"]  # the ACK of a non-2xx is not passed to the TU
    assert clock.pending == 0


def test_invite_server_reliable_no_g_zero_i(clock: FakeClock, wire: Wire, tu: Recorder) -> None:
    txn = ist(clock, wire, tu, reliable=True)
    final = reply(txn.request, 480)
    txn.send_response(final)
    clock.advance(20)
    assert statuses(wire) == [100, 480]  # no Timer G over a reliable transport
    txn.receive_request(ack_for(txn.request, final))
    # Timer I is zero: Confirmed ends at once.
    assert txn.state is State.TERMINATED
    assert tu.names == ["terminated"]
    assert clock.pending == 0


def test_invite_server_reliable_timer_h_still_runs(
    clock: FakeClock, wire: Wire, tu: Recorder
) -> None:
    txn = ist(clock, wire, tu, reliable=True)
    txn.send_response(reply(txn.request, 480))
    clock.advance(31.9)
    assert txn.state is State.COMPLETED
    clock.advance(0.1)
    assert txn.state is State.TERMINATED
    assert tu.names == ["ack_timeout", "terminated"]


def test_invite_server_completed_ignores_other_finals_but_passes_2xx(
    clock: FakeClock, wire: Wire, tu: Recorder
) -> None:
    txn = ist(clock, wire, tu, trying=False)
    txn.send_response(reply(txn.request, 487))
    assert txn.send_response(reply(txn.request, 500)) is False
    assert txn.send_response(reply(txn.request, 180)) is False
    # §16.7 step 5: a 2xx is still forwarded after a final response was sent.
    assert txn.send_response(reply(txn.request, 200)) is True
    assert statuses(wire) == [487, 200]
    assert txn.state is State.COMPLETED
    assert txn.last_response is not None and txn.last_response.status == 487
    txn.receive_request(request("INVITE"))
    assert statuses(wire)[-1] == 487


# -- INVITE server: 2xx, Accepted, Timer L (RFC 6026) ----------------------------------------


def test_invite_server_2xx_accepted_then_timer_l(
    clock: FakeClock, wire: Wire, tu: Recorder
) -> None:
    txn = ist(clock, wire, tu)
    ok = reply(txn.request, 200)
    assert txn.send_response(ok) is True
    assert txn.state is State.ACCEPTED
    # Retransmitted INVITEs are absorbed: not re-answered, not passed on.
    assert txn.receive_request(request("INVITE")) is True
    assert statuses(wire) == [100, 200]
    # The transaction never retransmits the 2xx itself...
    clock.advance(20)
    assert statuses(wire) == [100, 200]
    # ...but the TU's retransmissions (and other 2xx) pass through.
    assert txn.send_response(ok) is True
    assert txn.send_response(reply(txn.request, 200, to_tag="other")) is True
    assert statuses(wire) == [100, 200, 200, 200]
    # Only 2xx are accepted in this state.
    assert txn.send_response(reply(txn.request, 180)) is False
    assert txn.send_response(reply(txn.request, 486)) is False
    clock.advance(11.9)
    assert txn.state is State.ACCEPTED
    clock.advance(0.1)  # Timer L = 64*T1 after the 2xx
    assert txn.state is State.TERMINATED
    assert tu.names == ["terminated"]
    assert clock.pending == 0


def test_invite_server_accepted_timer_l_reliable_too(
    clock: FakeClock, wire: Wire, tu: Recorder
) -> None:
    txn = ist(clock, wire, tu, reliable=True)
    txn.send_response(reply(txn.request, 202))
    clock.advance(31.9)
    assert txn.state is State.ACCEPTED
    clock.advance(0.1)
    assert txn.state is State.TERMINATED


def test_invite_server_accepted_ack_goes_to_tu(
    clock: FakeClock, wire: Wire, ack_tu: AckRecorder
) -> None:
    txn = ist(clock, wire, ack_tu)
    txn.send_response(reply(txn.request, 200))
    ack = request("ACK", to_tag="b1")
    assert txn.receive_request(ack) is True
    assert ack_tu.events == [("ack", "ACK")]
    assert txn.state is State.ACCEPTED


def test_invite_server_accepted_ack_without_on_ack_is_not_taken(
    clock: FakeClock, wire: Wire, tu: Recorder
) -> None:
    txn = ist(clock, wire, tu)
    txn.send_response(reply(txn.request, 200))
    assert txn.receive_request(request("ACK", to_tag="b1")) is False
    assert txn.state is State.ACCEPTED


def test_invite_server_ack_in_proceeding_is_absorbed(
    clock: FakeClock, wire: Wire, tu: Recorder
) -> None:
    txn = ist(clock, wire, tu)
    assert txn.receive_request(request("ACK")) is True
    assert txn.state is State.PROCEEDING
    assert statuses(wire) == [100]


# -- INVITE server: transport errors -----------------------------------------------------------


def test_invite_server_transport_error_on_trying(
    clock: FakeClock, wire: Wire, tu: Recorder
) -> None:
    wire.fail = True
    txn = ist(clock, wire, tu)
    assert txn.state is State.TERMINATED
    assert tu.names == ["transport_error", "terminated"]
    assert clock.pending == 0


def test_invite_server_transport_error_in_proceeding(
    clock: FakeClock, wire: Wire, tu: Recorder
) -> None:
    txn = ist(clock, wire, tu)
    wire.fail = True
    assert txn.send_response(reply(txn.request, 180)) is False
    assert txn.state is State.TERMINATED
    assert tu.names == ["transport_error", "terminated"]
    assert txn.send_response(reply(txn.request, 486)) is False
    assert txn.receive_request(request("INVITE")) is False


def test_invite_server_transport_error_on_final_and_on_timer_g(
    clock: FakeClock, wire: Wire, tu: Recorder
) -> None:
    txn = ist(clock, wire, tu)
    txn.send_response(reply(txn.request, 486))
    wire.fail = True
    clock.advance(0.5)  # Timer G retransmission fails
    assert txn.state is State.TERMINATED
    assert tu.names == ["transport_error", "terminated"]
    assert clock.pending == 0

    tu2 = Recorder()
    txn2 = ist(clock, wire, tu2, trying=False, branch="z9hG4bK-2")
    assert txn2.send_response(reply(txn2.request, 486)) is False
    assert txn2.state is State.TERMINATED
    assert tu2.names == ["transport_error", "terminated"]
    assert clock.pending == 0


def test_invite_server_transport_error_on_retransmission_resend(
    clock: FakeClock, wire: Wire, tu: Recorder
) -> None:
    txn = ist(clock, wire, tu)
    wire.fail = True
    txn.receive_request(request("INVITE"))
    assert txn.state is State.TERMINATED
    assert tu.names == ["transport_error", "terminated"]


def test_invite_server_transport_error_on_2xx_keeps_accepted(
    clock: FakeClock, wire: Wire, tu: Recorder
) -> None:
    txn = ist(clock, wire, tu)
    wire.fail = True
    assert txn.send_response(reply(txn.request, 200)) is False
    # The 2xx is the TU's to retransmit; the transaction keeps absorbing INVITEs until L.
    assert txn.state is State.ACCEPTED
    assert tu.names == ["transport_error"]
    clock.advance(32)
    assert txn.state is State.TERMINATED
    assert tu.names == ["transport_error", "terminated"]


# -- INVITE server: safety lifetime ------------------------------------------------------------


def test_invite_server_lifetime_limit(clock: FakeClock, wire: Wire, ack_tu: AckRecorder) -> None:
    txn = ist(clock, wire, ack_tu)
    clock.advance(3599.9)
    assert txn.state is State.PROCEEDING
    clock.advance(0.1)
    assert txn.state is State.TERMINATED
    assert ack_tu.names == ["lifetime_expired", "terminated"]


def test_invite_server_lifetime_limit_without_callback(
    clock: FakeClock, wire: Wire, tu: Recorder, caplog: pytest.LogCaptureFixture
) -> None:
    txn = ist(clock, wire, tu, timers=TimerConfig(max_lifetime=60))
    clock.advance(60)
    assert txn.state is State.TERMINATED
    assert tu.names == ["terminated"]
    assert "no final response" in caplog.text


def test_invite_server_lifetime_stops_at_the_final_response(
    clock: FakeClock, wire: Wire, ack_tu: AckRecorder
) -> None:
    txn = ist(clock, wire, ack_tu)
    txn.send_response(reply(txn.request, 200))
    clock.advance(33)
    assert txn.state is State.TERMINATED
    assert clock.pending == 0
    assert "lifetime_expired" not in ack_tu.names


def test_invite_server_lifetime_disabled(clock: FakeClock, wire: Wire, tu: Recorder) -> None:
    txn = ist(clock, wire, tu, timers=TimerConfig(max_lifetime=None))
    assert clock.pending == 0
    txn.terminate()
    assert tu.names == ["terminated"]
    txn.terminate()  # idempotent
    assert tu.names == ["terminated"]


def test_invite_server_refuses_other_methods(clock: FakeClock, wire: Wire, tu: Recorder) -> None:
    req = request("BYE")
    with pytest.raises(ValueError):
        InviteServerTransaction(req, server_key(req), wire, False, clock, TimerConfig(), tu)


def test_cancel_timers_keeps_state(clock: FakeClock, wire: Wire, tu: Recorder) -> None:
    txn = ist(clock, wire, tu)
    txn.send_response(reply(txn.request, 486))
    txn.cancel_timers()
    assert clock.pending == 0
    assert txn.state is State.COMPLETED
    txn.terminate()
    assert txn.terminated and tu.names == ["terminated"]


# -- non-INVITE server -------------------------------------------------------------------------


def test_non_invite_server_trying_absorbs_retransmissions(
    clock: FakeClock, wire: Wire, tu: Recorder
) -> None:
    txn = nist(clock, wire, tu)
    assert txn.state is State.TRYING
    assert not txn.is_invite and txn.is_server
    assert txn.receive_request(txn.request) is True
    assert wire.sent == []


def test_non_invite_server_proceeding_resends_provisional(
    clock: FakeClock, wire: Wire, tu: Recorder
) -> None:
    txn = nist(clock, wire, tu)
    assert txn.send_response(reply(txn.request, 100)) is True
    assert txn.state is State.PROCEEDING
    txn.receive_request(txn.request)
    assert statuses(wire) == [100, 100]
    assert txn.send_response(reply(txn.request, 183)) is True
    txn.receive_request(txn.request)
    assert statuses(wire) == [100, 100, 183, 183]
    assert txn.state is State.PROCEEDING


@pytest.mark.parametrize("first", [None, 100])
def test_non_invite_server_completed_timer_j(
    clock: FakeClock, wire: Wire, tu: Recorder, first: int | None
) -> None:
    txn = nist(clock, wire, tu)
    if first:
        txn.send_response(reply(txn.request, first))
    assert txn.send_response(reply(txn.request, 200)) is True
    assert txn.state is State.COMPLETED
    wire.clear()
    txn.receive_request(txn.request)
    txn.receive_request(txn.request)
    assert statuses(wire) == [200, 200]
    # Only the first final counts.
    assert txn.send_response(reply(txn.request, 500)) is False
    assert txn.send_response(reply(txn.request, 100)) is False
    # No timer-driven retransmission of the final.
    clock.advance(31.9)
    assert statuses(wire) == [200, 200]
    assert txn.state is State.COMPLETED
    clock.advance(0.1)  # Timer J = 64*T1
    assert txn.state is State.TERMINATED
    assert tu.names == ["terminated"]
    assert clock.pending == 0
    assert txn.receive_request(txn.request) is False


def test_non_invite_server_reliable_timer_j_zero(
    clock: FakeClock, wire: Wire, tu: Recorder
) -> None:
    txn = nist(clock, wire, tu, reliable=True)
    txn.send_response(reply(txn.request, 404))
    assert txn.state is State.TERMINATED
    assert tu.names == ["terminated"]
    assert clock.pending == 0


def test_non_invite_server_transport_errors(clock: FakeClock, wire: Wire, tu: Recorder) -> None:
    txn = nist(clock, wire, tu)
    wire.fail = True
    assert txn.send_response(reply(txn.request, 200)) is False
    assert txn.state is State.TERMINATED
    assert tu.names == ["transport_error", "terminated"]
    assert clock.pending == 0

    wire.fail = False
    tu2 = Recorder()
    txn2 = nist(clock, wire, tu2)
    txn2.send_response(reply(txn2.request, 100))
    wire.fail = True
    txn2.receive_request(txn2.request)
    assert txn2.state is State.TERMINATED
    assert tu2.names == ["transport_error", "terminated"]


def test_non_invite_server_lifetime_limit(
    clock: FakeClock, wire: Wire, ack_tu: AckRecorder
) -> None:
    txn = nist(clock, wire, ack_tu, method="MESSAGE")
    txn.send_response(reply(txn.request, 100))
    clock.advance(3600)
    assert txn.state is State.TERMINATED
    assert ack_tu.names == ["lifetime_expired", "terminated"]


@pytest.mark.parametrize("method", ["INVITE", "ACK"])
def test_non_invite_server_refuses_invite_and_ack(
    clock: FakeClock, wire: Wire, tu: Recorder, method: str
) -> None:
    with pytest.raises(ValueError):
        nist(clock, wire, tu, method=method)


def test_responses_are_serialised_once(clock: FakeClock, wire: Wire, tu: Recorder) -> None:
    txn = nist(clock, wire, tu)
    resp = reply(txn.request, 200)
    resp.set_header("X-Changed", "1")  # changed: every to_bytes() call builds new bytes
    assert resp.to_bytes() is not resp.to_bytes()
    txn.send_response(resp)
    for _ in range(5):
        txn.receive_request(txn.request)
    assert len(wire.sent) == 6
    # One serialisation, re-sent as is (no spy subclass: the compiled build refuses those).
    assert len({id(data) for _, data in wire.sent}) == 1
