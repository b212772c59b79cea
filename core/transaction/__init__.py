"""The RFC 3261 §17 transaction layer (with RFC 6026), sans-I/O.

Transactions send through a callable they are given and schedule timers on a :class:`Clock`;
nothing here imports asyncio or the transports (:class:`AsyncioClock` takes the loop it is
given). Layering: ``sipline.sip`` < ``sipline.transaction`` < proxy.
"""

from .base import (
    ClientTransactionUser,
    InviteServerTransactionUser,
    SendFunc,
    ServerTransactionUser,
    State,
    Transaction,
    TransactionUser,
)
from .client import ClientTransaction, InviteClientTransaction, NonInviteClientTransaction
from .clock import AsyncioClock, Clock, FakeClock, TimerHandle, WheelClock, WheelTimer
from .keys import (
    MAGIC_COOKIE,
    Key,
    client_key,
    client_key_for_request,
    invite_key_for_cancel,
    is_rfc3261_branch,
    server_key,
)
from .layer import TransactionLayer
from .server import (
    InviteServerTransaction,
    NonInviteServerTransaction,
    ServerTransaction,
    make_trying,
)
from .timers import DEFAULT_TIMERS, TimerConfig

__all__ = [
    "AsyncioClock",
    "Clock",
    "ClientTransaction",
    "ClientTransactionUser",
    "DEFAULT_TIMERS",
    "FakeClock",
    "InviteClientTransaction",
    "InviteServerTransaction",
    "InviteServerTransactionUser",
    "Key",
    "MAGIC_COOKIE",
    "NonInviteClientTransaction",
    "NonInviteServerTransaction",
    "SendFunc",
    "ServerTransaction",
    "ServerTransactionUser",
    "State",
    "TimerConfig",
    "TimerHandle",
    "Transaction",
    "TransactionLayer",
    "TransactionUser",
    "WheelClock",
    "WheelTimer",
    "client_key",
    "client_key_for_request",
    "invite_key_for_cancel",
    "is_rfc3261_branch",
    "make_trying",
    "server_key",
]
