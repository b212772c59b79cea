"""Client transactions: RFC 3261 §17.1.1 (INVITE) and §17.1.2 (non-INVITE), with the RFC 6026
Accepted state for INVITE.

INVITE::

    Calling --1xx--> Proceeding                     (Timer A re-sends over unreliable
                                                     transports; Timer B times out Calling)
    Calling/Proceeding --2xx--> Accepted            (Timer M; every 2xx goes to the TU, which
                                                     ACKs it: the transaction never does)
    Calling/Proceeding --300-699--> Completed       (ACK built with make_ack and sent, re-sent
                                                     for each retransmitted final; Timer D)
    Accepted/Completed --Timer M/D--> Terminated

non-INVITE::

    Trying --1xx--> Proceeding --200-699--> Completed --Timer K--> Terminated
    (Timer E re-sends: doubling up to T2 in Trying, every T2 in Proceeding; Timer F times out)

The request is serialised once, in :meth:`ClientTransaction.start`; retransmissions send the
same bytes (as does the ACK, built once).

Timer B only guards Calling: once a provisional response arrived, the INVITE may ring for
minutes, and it is the proxy's Timer C (or the UAC) that ends it (§16.8, §17.1.1.2).
"""

from __future__ import annotations

import logging
from typing import Any

from sipline.sip.message import Request, Response
from sipline.sip.requests import make_ack

from .base import SendFunc, State, Transaction
from .clock import Clock
from .keys import client_key_for_request
from .timers import TimerConfig

__all__ = ["ClientTransaction", "InviteClientTransaction", "NonInviteClientTransaction"]

log = logging.getLogger(__name__)

_CALLING = State.CALLING
_TRYING = State.TRYING
_PROCEEDING = State.PROCEEDING
_COMPLETED = State.COMPLETED
_ACCEPTED = State.ACCEPTED
_TERMINATED = State.TERMINATED


class ClientTransaction(Transaction):
    """Common part of the client transactions. The key is ``(top Via branch, method)``."""

    __slots__ = ("_data",)

    def __init__(
        self,
        request: Request,
        send: SendFunc,
        reliable: bool,
        clock: Clock,
        timers: TimerConfig,
        user: Any,
        state: State,
    ) -> None:
        super().__init__(
            request, client_key_for_request(request), send, reliable, clock, timers, user, state
        )
        self._data: bytes | None = None

    @property
    def started(self) -> bool:
        return self._data is not None

    def start(self) -> bool:  # pragma: no cover - abstract
        """Send the request and start the timers. Returns False on a transport error (the
        transaction is then Terminated and the TU was told)."""
        raise NotImplementedError

    def receive_response(self, response: Response) -> None:  # pragma: no cover - abstract
        """Handle a response matched to this transaction."""
        raise NotImplementedError

    def _serialise(self) -> bytes:
        if self._data is not None:
            raise RuntimeError(f"{self!r} was already started")
        if self.state is _TERMINATED:
            raise RuntimeError(f"{self!r} is terminated")
        data = self._data = self.request.to_bytes()
        return data


class InviteClientTransaction(ClientTransaction):
    """RFC 3261 §17.1.1 with RFC 6026. Starts in Calling.

    ``ack`` is the ACK the transaction generated for a non-2xx final response (None before).
    """

    __slots__ = ("_a_interval", "ack", "_ack_data")

    is_invite = True

    ack: Request | None

    def __init__(
        self,
        request: Request,
        send: SendFunc,
        reliable: bool,
        clock: Clock,
        timers: TimerConfig,
        user: Any,
    ) -> None:
        if request.method != "INVITE":
            raise ValueError(f"an INVITE client transaction cannot send a {request.method}")
        super().__init__(request, send, reliable, clock, timers, user, _CALLING)
        self._a_interval = timers.a
        self.ack = None
        self._ack_data: bytes | None = None

    def start(self) -> bool:
        data = self._serialise()
        timers = self._timers
        clock = self._clock
        if not self.reliable:
            self._a_interval = timers.a
            self._t_retx = clock.call_later(timers.a, self._on_timer_a)
        self._t_timeout = clock.call_later(timers.b, self._on_timer_b)
        return self._transmit(data)

    def receive_response(self, response: Response) -> None:
        state = self.state
        status = response.status
        if state is _CALLING or state is _PROCEEDING:
            if status < 200:
                if state is _CALLING:
                    # No more retransmissions, and no more Timer B: a provisional response
                    # proves the request arrived (§17.1.1.2). What ends Proceeding is the
                    # proxy's Timer C; max_lifetime is the safety net should it not.
                    self.state = _PROCEEDING
                    self._stop_retx_and_timeout()
                    self._start_lifetime()
                self.user.on_response(self, response)
            elif status < 300:
                self.state = _ACCEPTED
                self._stop_retx_and_timeout()
                self._t_wait = self._clock.call_later(self._timers.m, self._on_timer_m)
                self.user.on_response(self, response)
            else:
                self._complete(response)
        elif state is _COMPLETED:
            if status >= 300:
                # A retransmitted final: our ACK was lost. Re-send it; the TU saw it already.
                self._transmit(self._ack_data)  # type: ignore[arg-type]
        elif state is _ACCEPTED:
            if 200 <= status < 300:
                # RFC 6026 §8.4: retransmissions and other branches' 2xx all go to the TU.
                self.user.on_response(self, response)

    def _complete(self, response: Response) -> None:
        try:
            ack = make_ack(self.request, response)
        except ValueError as err:
            # Only a response without the headers an ACK needs gets here: the parser lets a
            # response through without To or From. It cannot be acknowledged, so it is
            # treated as if it never arrived.
            log.warning("%r: dropped a %d that cannot be acknowledged: %s", self, response.status,
                        err)
            return
        self.state = _COMPLETED
        self._stop_retx_and_timeout()
        self.ack = ack
        ack_data = self._ack_data = ack.to_bytes()
        wait = self._timers.d_for(self.reliable)
        if wait > 0:
            self._t_wait = self._clock.call_later(wait, self._on_timer_d)
        try:
            # The TU hears the response first: it must not be lost to a failing ACK send.
            self.user.on_response(self, response)
        finally:
            if self.state is _COMPLETED and self._transmit(ack_data) and wait <= 0:
                self._finish(None)

    def _on_timer_a(self) -> None:
        self._t_retx = None
        if self.state is not _CALLING:
            return
        # Timer A doubles without the T2 cap of the non-INVITE Timer E (§17.1.1.2).
        interval = self._a_interval * 2
        self._a_interval = interval
        self._t_retx = self._clock.call_later(interval, self._on_timer_a)
        self._transmit(self._data)  # type: ignore[arg-type]

    def _on_timer_b(self) -> None:
        self._t_timeout = None
        if self.state is _CALLING:
            self._finish(self.user.on_timeout)

    def _on_timer_d(self) -> None:
        self._t_wait = None
        if self.state is _COMPLETED:
            self._finish(None)

    def _on_timer_m(self) -> None:
        self._t_wait = None
        if self.state is _ACCEPTED:
            self._finish(None)


class NonInviteClientTransaction(ClientTransaction):
    """RFC 3261 §17.1.2. Starts in Trying."""

    __slots__ = ("_e_interval",)

    def __init__(
        self,
        request: Request,
        send: SendFunc,
        reliable: bool,
        clock: Clock,
        timers: TimerConfig,
        user: Any,
    ) -> None:
        if request.method in ("INVITE", "ACK"):
            raise ValueError(f"a {request.method} has no non-INVITE client transaction")
        super().__init__(request, send, reliable, clock, timers, user, _TRYING)
        self._e_interval = timers.e

    def start(self) -> bool:
        data = self._serialise()
        timers = self._timers
        clock = self._clock
        if not self.reliable:
            self._e_interval = timers.e
            self._t_retx = clock.call_later(timers.e, self._on_timer_e)
        self._t_timeout = clock.call_later(timers.f, self._on_timer_f)
        return self._transmit(data)

    def receive_response(self, response: Response) -> None:
        state = self.state
        if state is not _TRYING and state is not _PROCEEDING:
            return  # Completed: retransmissions are absorbed.
        if response.status < 200:
            self.state = _PROCEEDING
            self.user.on_response(self, response)
            return
        self.state = _COMPLETED
        self._stop_retx_and_timeout()
        wait = self._timers.k_for(self.reliable)
        if wait > 0:
            self._t_wait = self._clock.call_later(wait, self._on_timer_k)
        try:
            self.user.on_response(self, response)
        finally:
            if wait <= 0:
                self._finish(None)

    def _on_timer_e(self) -> None:
        self._t_retx = None
        state = self.state
        t2 = self._timers.t2
        if state is _TRYING:
            interval = self._e_interval * 2
            if interval > t2:
                interval = t2
        elif state is _PROCEEDING:
            interval = t2
        else:
            return
        self._e_interval = interval
        self._t_retx = self._clock.call_later(interval, self._on_timer_e)
        self._transmit(self._data)  # type: ignore[arg-type]

    def _on_timer_f(self) -> None:
        self._t_timeout = None
        state = self.state
        if state is _TRYING or state is _PROCEEDING:
            self._finish(self.user.on_timeout)

    def _on_timer_k(self) -> None:
        self._t_wait = None
        if self.state is _COMPLETED:
            self._finish(None)
