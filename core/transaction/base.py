"""What the four transaction state machines share: states, the TU callback protocols, and the
timer/transport/termination plumbing.

A transaction is sans-I/O: it sends through the ``send`` callable it was given (which returns
False on a transport error) and schedules its timers on the :class:`~.clock.Clock` it was
given. Every transaction ends in Terminated through its own timers, through a transport error
or through :meth:`Transaction.terminate`; entering Terminated cancels every timer, unlinks the
transaction from the :class:`~.layer.TransactionLayer` that holds it and calls the TU's
``on_terminated`` exactly once.

Callbacks are called synchronously, sometimes from inside the TU's own call (a transport
error while the TU sends a response, a zero-length Timer J/K/D/I over a reliable transport).
The transaction updates its own state before calling out, so a callback that raises leaves
it consistent; the exception propagates to whoever drove the transaction (the clock or the
caller of ``receive_*``/``send_response``).
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from sipline.sip.message import Request

from .clock import Clock, TimerHandle
from .keys import Key
from .timers import TimerConfig

if TYPE_CHECKING:  # pragma: no cover
    from sipline.sip.message import Response

log = logging.getLogger("sipline.transaction")

__all__ = [
    "State",
    "SendFunc",
    "Transaction",
    "TransactionUser",
    "ServerTransactionUser",
    "InviteServerTransactionUser",
    "ClientTransactionUser",
]

#: Hands bytes to the transport; returns False on a transport error (RFC 3261 §17.1.4, §17.2.4).
SendFunc = Callable[[bytes], bool]


class State(enum.Enum):
    """Transaction states of RFC 3261 §17 and RFC 6026 (Accepted)."""

    CALLING = "Calling"
    TRYING = "Trying"
    PROCEEDING = "Proceeding"
    COMPLETED = "Completed"
    CONFIRMED = "Confirmed"
    ACCEPTED = "Accepted"
    TERMINATED = "Terminated"

    def __str__(self) -> str:
        return self.value


class TransactionUser(Protocol):
    """Callbacks every transaction user provides."""

    def on_terminated(self, txn: Any) -> None:
        """The transaction entered Terminated (called once, always last)."""

    def on_transport_error(self, txn: Any) -> None:
        """Sending failed; the transaction is already Terminated (``on_terminated`` follows),
        except in the INVITE server's Accepted state, where the 2xx belongs to the TU and the
        transaction stays until Timer L."""


class ServerTransactionUser(TransactionUser, Protocol):
    """Callbacks of a server transaction's user.

    Optional, looked up when needed: ``on_lifetime_expired(txn)``, called when the
    transaction is terminated by the ``max_lifetime`` safety limit because the TU never sent
    a final response (``on_terminated`` follows).
    """

    def on_ack_timeout(self, txn: Any) -> None:
        """Timer H fired: no ACK came for a non-2xx final response (INVITE server only)."""


class InviteServerTransactionUser(ServerTransactionUser, Protocol):
    """Optional, looked up when needed: ``on_ack(txn, ack)``, called for an ACK that matches
    the transaction in its Accepted state (RFC 6026 §7.1: such an ACK acknowledges the 2xx
    and belongs to the TU). Without it, ``receive_request`` returns False for that ACK."""


class ClientTransactionUser(TransactionUser, Protocol):
    """Callbacks of a client transaction's user.

    Optional, looked up when needed: ``on_lifetime_expired(txn)``, called when an INVITE
    client transaction is terminated by the ``max_lifetime`` safety limit, counted from its
    first provisional response, because no final response came and the TU (the proxy's
    Timer C) did not end it (``on_terminated`` follows).
    """

    def on_response(self, txn: Any, response: Response) -> None:
        """A response the TU must see (the transaction absorbs retransmissions)."""

    def on_timeout(self, txn: Any) -> None:
        """Timer B or F fired without a final response (a proxy treats it as a 408); the
        transaction is already Terminated (``on_terminated`` follows)."""


_TRYING = State.TRYING
_PROCEEDING = State.PROCEEDING
_TERMINATED = State.TERMINATED


# (Identity tests: an Enum member's hash is computed in Python.)
_COMPLETED = State.COMPLETED
_ACCEPTED = State.ACCEPTED
_CONFIRMED = State.CONFIRMED


class Transaction:
    """Base of the four state machines. Not instantiated directly."""

    __slots__ = (
        "request", "key", "state", "reliable", "user", "_send", "_clock", "_timers",
        "_table", "_t_retx", "_t_timeout", "_t_wait",
    )

    #: Whether this is an INVITE transaction (class constant).
    is_invite: bool = False
    #: Whether this is a server transaction (class constant).
    is_server: bool = False

    request: Request
    key: Key
    state: State
    reliable: bool
    user: Any

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
        self.request = request
        self.key = key
        self.state = state
        self.reliable = reliable
        self.user = user
        self._send = send
        self._clock = clock
        self._timers = timers
        # The table of the TransactionLayer holding this transaction (set by the layer); the
        # transaction removes itself on termination. A reference to the layer's dict, not a
        # bound method: one object less per finished transaction for the collector to scan.
        self._table: dict[Key, Any] | None = None
        # One slot per timer role: retransmission (A, E, G), timeout (B, F, H, and the
        # max_lifetime safety limit in the states that have none of those), and the wait
        # before termination (D, I, J, K, L, M). A state never needs two timers of one role.
        self._t_retx: TimerHandle | None = None
        self._t_timeout: TimerHandle | None = None
        self._t_wait: TimerHandle | None = None

    # -- public --------------------------------------------------------------------------

    @property
    def terminated(self) -> bool:
        return self.state is _TERMINATED

    def cancel_timers(self) -> None:
        """Cancel every pending timer without changing state.

        The transaction then stays in its state until :meth:`terminate` is called (or a
        message moves it on): whoever calls this takes over its lifetime.
        """
        self._cancel_timers()

    def terminate(self) -> None:
        """Move to Terminated now (idempotent): timers cancelled, unlinked from its layer,
        ``on_terminated`` called. For a TU that abandons the transaction."""
        self._finish(None)

    def __repr__(self) -> str:
        method = self.request.method if self.request is not None else self.key[-1]
        return f"<{type(self).__name__} {method} {self.state.value} {self.key!r}>"

    def slim(self) -> bool:
        """Let go of the parsed messages, for a TU that will not ask for them again.

        Only in a wait state (Completed, Accepted, Confirmed), where the
        transaction works from its key and the bytes it kept (last response,
        ACK); RFC 2543 fallback transactions keep everything (their ACK
        matching reads the messages). Freeing them when the TU is done, not
        when the wait timer ends (up to 32 s later), keeps the garbage
        collector from scanning them over and over under load. ``request``
        (and a server's ``last_response``) are None afterwards.

        :returns: True when the messages were released.
        """
        state = self.state
        if (
            state is not _COMPLETED and state is not _ACCEPTED and state is not _CONFIRMED
        ) or self.key[0] == "2543":
            return False
        self.request = None  # type: ignore[assignment]
        return True

    # -- plumbing for the subclasses -----------------------------------------------------

    def _stop_timeout(self) -> None:
        t = self._t_timeout
        if t is not None:
            self._t_timeout = None
            t.cancel()

    def _stop_retx_and_timeout(self) -> None:
        t = self._t_retx
        if t is not None:
            self._t_retx = None
            t.cancel()
        self._stop_timeout()

    def _cancel_timers(self) -> None:
        self._stop_retx_and_timeout()
        t = self._t_wait
        if t is not None:
            self._t_wait = None
            t.cancel()

    def _finish(self, report: Callable[[Any], object] | None) -> None:
        """Enter Terminated; call ``report(self)`` (e.g. the TU's ``on_timeout``) and then
        ``on_terminated``. The unlinking happens first, so an exception in a callback cannot
        leave a dead transaction in the tables."""
        if self.state is _TERMINATED:
            return
        self.state = _TERMINATED
        self._cancel_timers()
        table = self._table
        if table is not None:
            self._table = None
            if table.get(self.key) is self:
                del table[self.key]
        try:
            if report is not None:
                report(self)
        finally:
            self.user.on_terminated(self)

    def _transmit(self, data: bytes) -> bool:
        """Send; on a transport error inform the TU and terminate (§17.1.4, §17.2.4)."""
        if self._send(data):
            return True
        self._finish(self.user.on_transport_error)
        return False

    def _start_lifetime(self) -> None:
        """Arm the max_lifetime safety limit in the timeout slot (see TimerConfig)."""
        life = self._timers.max_lifetime
        if life is not None:
            self._t_timeout = self._clock.call_later(life, self._on_lifetime)

    def _on_lifetime(self) -> None:
        self._t_timeout = None
        state = self.state
        if state is _TRYING or state is _PROCEEDING:
            log.warning(
                "%r: no final response in %.0f s (max_lifetime): terminated",
                self, self._timers.max_lifetime,
            )
            self._finish(getattr(self.user, "on_lifetime_expired", None))

    def _wait_then_finish(self, delay: float, callback: Callable[[], None]) -> None:
        """Start a D/I/J/K-style wait; a zero wait (reliable transport) ends at once, without
        scheduling a timer."""
        if delay > 0:
            self._t_wait = self._clock.call_later(delay, callback)
        else:
            self._finish(None)
