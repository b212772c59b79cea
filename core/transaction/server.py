"""Server transactions: RFC 3261 §17.2.1 (INVITE) and §17.2.2 (non-INVITE), with the RFC 6026
Accepted state for INVITE.

INVITE::

    Proceeding --1xx from TU: send--> Proceeding      (INVITE retransmission: re-send last 1xx)
    Proceeding --2xx from TU: send--> Accepted        (Timer L; INVITEs absorbed, 2xx from TU
                                                       sent, ACK passed to the TU)
    Proceeding --300-699 from TU--> Completed         (Timer G re-sends the final over
                                                       unreliable transports, Timer H gives up
                                                       waiting for the ACK)
    Completed  --ACK--> Confirmed                     (Timer I absorbs ACK retransmissions)
    Confirmed/Accepted/Completed --Timer I/L/H--> Terminated

non-INVITE::

    Trying --1xx from TU--> Proceeding --200-699 from TU--> Completed --Timer J--> Terminated

The TU's final response is serialised once; its bytes are what every retransmission sends.

A transport error informs the TU and terminates the transaction (§17.2.4), except for a 2xx:
the TU owns 2xx reliability (§13.3.1.4), so in Accepted the error is reported and the
transaction stays to absorb INVITE retransmissions until Timer L. A 2xx from the TU is also
sent in Completed/Confirmed, without a state change: a proxy must forward a late 2xx even after
it sent a final response upstream (§16.7 step 5).

The transaction has no timer of its own that produces a final response: for an INVITE the
proxy's Timer C does that (§16.8). As a last resort against a TU that never answers, a
server transaction still in Trying/Proceeding after ``TimerConfig.max_lifetime`` is
terminated, logged and reported through the TU's optional ``on_lifetime_expired``.
"""

from __future__ import annotations

import logging
from typing import Any

from sipline.sip.message import Request, Response, make_response

from .base import SendFunc, State, Transaction
from .clock import Clock
from .keys import Key
from .timers import TimerConfig

__all__ = ["ServerTransaction", "InviteServerTransaction", "NonInviteServerTransaction",
           "make_trying"]

log = logging.getLogger(__name__)

_TRYING = State.TRYING
_PROCEEDING = State.PROCEEDING
_COMPLETED = State.COMPLETED
_CONFIRMED = State.CONFIRMED
_ACCEPTED = State.ACCEPTED
_TERMINATED = State.TERMINATED


def make_trying(request: Request) -> Response:
    """The 100 (Trying) a server transaction sends for an INVITE (§17.2.1): no To tag is added,
    and a Timestamp header is copied (§8.2.6.1)."""
    timestamp = request.get("Timestamp")
    headers = None if timestamp is None else [("Timestamp", timestamp)]
    return make_response(request, 100, headers=headers)


class ServerTransaction(Transaction):
    """Common part of the server transactions: the last response and the lifetime limit."""

    __slots__ = ("last_response", "_last_data")

    is_server = True

    last_response: Response | None

    def __init__(
        self,
        request: Request,
        key: Key,
        send: SendFunc,
        reliable: bool,
        clock: Clock,
        timers: TimerConfig,
        user: Any,
        state: State,
    ) -> None:
        super().__init__(request, key, send, reliable, clock, timers, user, state)
        self.last_response = None
        self._last_data: bytes | None = None
        self._start_lifetime()

    def receive_request(self, msg: Request) -> bool:  # pragma: no cover - abstract
        """Handle a request matched to this transaction. Returns False when the transaction
        did not take it (terminated, or an ACK for the TU that the TU has no ``on_ack``
        for): the caller then treats it as a request that matched nothing."""
        raise NotImplementedError

    def send_response(self, response: Response) -> bool:  # pragma: no cover - abstract
        """Send a response from the TU. Returns False when it was not sent (transport error,
        or refused in the current state)."""
        raise NotImplementedError

    def slim(self) -> bool:
        if not super().slim():
            return False
        self.last_response = None
        return True

    def _resend_last(self) -> None:
        data = self._last_data
        if data is not None:
            self._transmit(data)


class InviteServerTransaction(ServerTransaction):
    """RFC 3261 §17.2.1 with RFC 6026. Starts in Proceeding.

    :param trying: send a 100 (Trying). The RFC requires it unless the TU answers within
        200 ms. A transport error on it terminates the transaction (before the constructor
        returns when it is sent at once).
    :param trying_after: seconds to wait for the TU's own first response before sending the
        100 (0: at once). A proxy whose next hop rings within that time never sends one,
        which saves a datagram per call; the 100 still comes well before the caller's first
        retransmission (T1), and a retransmitted INVITE gets it at once.
    """

    __slots__ = ("_g_interval",)

    is_invite = True

    def __init__(
        self,
        request: Request,
        key: Key,
        send: SendFunc,
        reliable: bool,
        clock: Clock,
        timers: TimerConfig,
        user: Any,
        *,
        trying: bool = True,
        trying_after: float = 0.0,
    ) -> None:
        if request.method != "INVITE":
            raise ValueError(f"an INVITE server transaction cannot serve a {request.method}")
        super().__init__(request, key, send, reliable, clock, timers, user, _PROCEEDING)
        self._g_interval = timers.g
        if trying:
            if trying_after > 0:
                # Proceeding uses no retransmission timer: the slot holds the pending 100.
                self._t_retx = clock.call_later(trying_after, self._on_trying_due)
            else:
                self.send_response(make_trying(request))

    def _on_trying_due(self) -> None:
        self._t_retx = None
        if self.state is _PROCEEDING and self._last_data is None:
            self.send_response(make_trying(self.request))

    def receive_request(self, msg: Request) -> bool:
        state = self.state
        if msg.method == "ACK":
            if state is _COMPLETED:
                # The ACK for our non-2xx: stop re-sending the final and stop waiting (G, H);
                # Timer I absorbs the ACK's own retransmissions.
                self.state = _CONFIRMED
                self._stop_retx_and_timeout()
                self._wait_then_finish(self._timers.i_for(self.reliable), self._on_timer_i)
                return True
            if state is _ACCEPTED:
                # RFC 6026 §7.1: the ACK of a 2xx belongs to the TU, never absorbed.
                on_ack = getattr(self.user, "on_ack", None)
                if on_ack is None:
                    return False
                on_ack(self, msg)
                return True
            # Confirmed: an ACK retransmission. Proceeding: an ACK before any final response
            # acknowledges nothing; absorbing it is all that can be done.
            return state is not _TERMINATED
        if state is _PROCEEDING or state is _COMPLETED:
            if self._last_data is None and self._t_retx is not None:
                self._t_retx.cancel()
                self._on_trying_due()  # the caller is retransmitting: quench it now
            else:
                self._resend_last()
            return True
        # Accepted (RFC 6026: absorbed, not passed to the TU) and Confirmed.
        return state is not _TERMINATED

    def send_response(self, response: Response) -> bool:
        state = self.state
        status = response.status
        if state is _PROCEEDING:
            t = self._t_retx
            if t is not None:  # a pending 100: this response makes it unnecessary
                self._t_retx = None
                t.cancel()
            data = response.to_bytes()
            self.last_response = response
            self._last_data = data
            if status < 200:
                return self._transmit(data)
            self._stop_timeout()
            timers = self._timers
            clock = self._clock
            if status < 300:
                self.state = _ACCEPTED
                self._t_wait = clock.call_later(timers.l, self._on_timer_l)
                return self._send_2xx(data)
            self.state = _COMPLETED
            if not self.reliable:
                self._g_interval = timers.g
                self._t_retx = clock.call_later(timers.g, self._on_timer_g)
            self._t_timeout = clock.call_later(timers.h, self._on_timer_h)
            return self._transmit(data)
        if 200 <= status < 300 and state is not _TERMINATED:
            # Accepted: a 2xx retransmission from the TU, or another branch's 2xx (RFC 6026
            # §7.1). Completed/Confirmed: a 2xx a proxy must still forward after it sent a
            # final response (§16.7 step 5). Sent as is; the state does not change.
            if state is _ACCEPTED:
                self.last_response = response
            return self._send_2xx(response.to_bytes())
        log.debug("%r: %d from the TU ignored in state %s", self, status, state)
        return False

    def _send_2xx(self, data: bytes) -> bool:
        # The 2xx is the TU's to make reliable (§13.3.1.4): a transport error is reported but
        # the transaction stays, so retransmitted INVITEs keep being absorbed until Timer L.
        if self._send(data):
            return True
        self.user.on_transport_error(self)
        return False

    def _on_timer_g(self) -> None:
        self._t_retx = None
        if self.state is not _COMPLETED:
            return
        interval = self._g_interval * 2
        t2 = self._timers.t2
        if interval > t2:
            interval = t2
        self._g_interval = interval
        self._t_retx = self._clock.call_later(interval, self._on_timer_g)
        self._transmit(self._last_data)  # type: ignore[arg-type]

    def _on_timer_h(self) -> None:
        self._t_timeout = None
        if self.state is _COMPLETED:
            self._finish(self.user.on_ack_timeout)

    def _on_timer_i(self) -> None:
        self._t_wait = None
        if self.state is _CONFIRMED:
            self._finish(None)

    def _on_timer_l(self) -> None:
        self._t_wait = None
        if self.state is _ACCEPTED:
            self._finish(None)


class NonInviteServerTransaction(ServerTransaction):
    """RFC 3261 §17.2.2. Starts in Trying."""

    __slots__ = ()

    def __init__(
        self,
        request: Request,
        key: Key,
        send: SendFunc,
        reliable: bool,
        clock: Clock,
        timers: TimerConfig,
        user: Any,
    ) -> None:
        if request.method in ("INVITE", "ACK"):
            raise ValueError(f"a {request.method} has no non-INVITE server transaction")
        super().__init__(request, key, send, reliable, clock, timers, user, _TRYING)

    def receive_request(self, msg: Request) -> bool:
        state = self.state
        if state is _PROCEEDING or state is _COMPLETED:
            self._resend_last()
            return True
        # Trying: nothing to re-send yet, the retransmission is discarded.
        return state is _TRYING

    def send_response(self, response: Response) -> bool:
        state = self.state
        if state is not _TRYING and state is not _PROCEEDING:
            log.debug("%r: %d from the TU ignored in state %s", self, response.status, state)
            return False
        data = response.to_bytes()
        self.last_response = response
        self._last_data = data
        if response.status < 200:
            self.state = _PROCEEDING
            return self._transmit(data)
        self.state = _COMPLETED
        self._stop_timeout()
        if not self._transmit(data):
            return False
        self._wait_then_finish(self._timers.j_for(self.reliable), self._on_timer_j)
        return True

    def _on_timer_j(self) -> None:
        self._t_wait = None
        if self.state is _COMPLETED:
            self._finish(None)
