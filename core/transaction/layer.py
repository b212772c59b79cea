"""The transaction layer: the tables that match incoming messages to live transactions.

Two dicts keyed by :mod:`~.keys` tuples, one for server and one for client transactions: a
lookup is one key computation and one hash. A transaction added here is removed the moment it
enters Terminated (it deletes itself from the layer's table before its TU's ``on_terminated``), and every
transaction reaches Terminated through its own timers, so the tables cannot leak: their size
is bounded by the traffic of the last 64*T1 seconds (32 s for Timer D), plus INVITEs still
waiting for a final response, which the proxy's Timer C or, failing that,
``TimerConfig.max_lifetime`` bound.
"""

from __future__ import annotations

from typing import Any

from sipline.sip.message import Request, Response

from .base import SendFunc, Transaction
from .client import ClientTransaction, InviteClientTransaction, NonInviteClientTransaction
from .clock import Clock
from .keys import Key, client_key, fallback_ack_keys, invite_key_for_cancel, server_key
from .server import InviteServerTransaction, NonInviteServerTransaction, ServerTransaction
from .timers import DEFAULT_TIMERS, TimerConfig

__all__ = ["TransactionLayer"]

_COOKIE_KEY_LEN = 3  # (branch, sent-by, method); RFC 2543 fallback keys are longer


_NO_KEY: tuple[Any, Any] = (None, None)


class TransactionLayer:
    """Server and client transaction tables, plus factories that create and register
    transactions with the layer's clock and timers."""

    __slots__ = ("clock", "timers", "_servers", "_clients", "_last_key")

    def __init__(self, clock: Clock, timers: TimerConfig = DEFAULT_TIMERS) -> None:
        self.clock = clock
        self.timers = timers
        self._servers: dict[Key, ServerTransaction] = {}
        self._clients: dict[Key, ClientTransaction] = {}
        self._last_key: tuple[Any, Any] = _NO_KEY

    # -- counters --------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._servers) + len(self._clients)

    @property
    def server_count(self) -> int:
        return len(self._servers)

    @property
    def client_count(self) -> int:
        return len(self._clients)

    def __repr__(self) -> str:
        return f"<TransactionLayer servers={len(self._servers)} clients={len(self._clients)}>"

    # -- matching --------------------------------------------------------------------------

    def find_server(self, msg: Request) -> ServerTransaction | None:
        """The server transaction ``msg`` belongs to (a retransmission, or the ACK of a
        non-2xx final response), or None for a new request (§17.2.3).

        A CANCEL matches only its own transaction (a retransmitted CANCEL); see
        :meth:`find_invite_for_cancel` for the INVITE it cancels.
        """
        key = server_key(msg)
        # A miss is usually followed by create_server for the same message: keep its key.
        self._last_key = (msg, key)
        if msg.method == "ACK" and len(key) != _COOKIE_KEY_LEN:
            return self._find_fallback_ack(msg)
        return self._servers.get(key)

    def _find_fallback_ack(self, ack: Request) -> ServerTransaction | None:
        # RFC 2543 ACK: it matches the INVITE whose *response* carried the ACK's To tag.
        ack_tag = ack.to.tag or ""
        servers = self._servers
        for key in fallback_ack_keys(ack):
            txn = servers.get(key)
            if txn is None or not txn.is_invite:
                continue
            response = txn.last_response
            if response is not None and response.status >= 200 \
                    and (response.to.tag or "") == ack_tag:
                return txn
        return None

    def find_client(self, response: Response) -> ClientTransaction | None:
        """The client transaction ``response`` belongs to (§17.1.3), or None (a stray
        response: RFC 6026 §7.2 has a proxy drop it)."""
        key = client_key(response)
        if key is None:
            return None
        return self._clients.get(key)

    def find_invite_for_cancel(self, cancel: Request) -> InviteServerTransaction | None:
        """The INVITE server transaction a CANCEL cancels (§9.2), or None (then the CANCEL
        is answered 481 or forwarded statelessly)."""
        txn = self._servers.get(invite_key_for_cancel(cancel))
        if txn is not None and txn.is_invite:
            return txn  # type: ignore[return-value]
        return None

    # -- registration ----------------------------------------------------------------------

    def add_server(self, txn: ServerTransaction) -> bool:
        """Register a server transaction under its key. Returns False, registering nothing,
        when it is already Terminated (e.g. its 100 Trying could not be sent).

        :raises ValueError: if a live transaction already has that key (the caller should
            have found it with :meth:`find_server`).
        """
        return self._add(self._servers, txn)

    def add_client(self, txn: ClientTransaction) -> bool:
        """Register a client transaction under its key (see :meth:`add_server`)."""
        return self._add(self._clients, txn)

    @staticmethod
    def _add(table: dict[Key, Any], txn: Transaction) -> bool:
        if txn.terminated:
            return False
        key = txn.key
        other = table.get(key)
        if other is not None:
            if other is txn:
                return True
            raise ValueError(f"a transaction with key {key!r} already exists: {other!r}")
        if txn._table is not None:
            raise ValueError(f"{txn!r} is already registered with another layer")
        table[key] = txn
        txn._table = table
        return True

    # -- factories -------------------------------------------------------------------------

    def create_server(
        self,
        request: Request,
        send: SendFunc,
        reliable: bool,
        user: Any,
        *,
        trying: bool = True,
        trying_after: float = 0.0,
    ) -> ServerTransaction:
        """Create the server transaction for a new request and register it.

        :param trying: for an INVITE, send a 100 (Trying).
        :param trying_after: ... after this many seconds without a response from the TU
            (0: at once; see :class:`~.server.InviteServerTransaction`).
        :raises ValueError: for an ACK (it never creates a transaction) or a duplicate key.
        """
        method = request.method
        last_msg, key = self._last_key
        if last_msg is not request:
            key = server_key(request)
        self._last_key = _NO_KEY
        txn: ServerTransaction
        if method == "INVITE":
            txn = InviteServerTransaction(
                request, key, send, reliable, self.clock, self.timers, user,
                trying=trying, trying_after=trying_after,
            )
        elif method == "ACK":
            raise ValueError("an ACK never creates a server transaction")
        else:
            txn = NonInviteServerTransaction(
                request, key, send, reliable, self.clock, self.timers, user
            )
        self.add_server(txn)
        return txn

    def create_client(
        self, request: Request, send: SendFunc, reliable: bool, user: Any
    ) -> ClientTransaction:
        """Create and register the client transaction for ``request`` (its top Via must carry
        a fresh branch). It is not started: call ``start()``, after which responses find it."""
        txn: ClientTransaction
        if request.method == "INVITE":
            txn = InviteClientTransaction(request, send, reliable, self.clock, self.timers, user)
        else:
            txn = NonInviteClientTransaction(
                request, send, reliable, self.clock, self.timers, user
            )
        self.add_client(txn)
        return txn

    # -- shutdown --------------------------------------------------------------------------

    def terminate_all(self) -> int:
        """Terminate every transaction (server shutdown). Returns how many there were."""
        txns: list[Transaction] = [*self._servers.values(), *self._clients.values()]
        for txn in txns:
            txn.terminate()
        return len(txns)
