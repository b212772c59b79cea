"""What a relay attempt reports back to the routing script."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class RelayError(enum.Enum):
    """Why a relay did not happen; each maps to the reply the core sends if the script doesn't."""

    NO_TARGET = (500, "No Destination")  # no branch to send to
    BAD_TARGET = (416, "Unsupported URI Scheme")  # a target that is not a sip/sips URI
    UNRESOLVABLE = (503, "Service Unavailable")  # DNS gave no address for every branch
    SEND_FAILED = (503, "Service Unavailable")  # the transport refused every branch
    NO_TRANSPORT = (503, "Service Unavailable")  # no listener of the needed transport/family
    LOOP = (482, "Loop Detected")  # RFC 3261 §16.3 step 4
    TOO_MANY_HOPS = (483, "Too Many Hops")  # Max-Forwards 0 (§16.3 step 3)
    TRANSACTION_EXISTS = (0, "")  # already relayed: the existing transaction answers

    @property
    def status(self) -> int:
        return self.value[0]

    @property
    def reason(self) -> str:
        return self.value[1]


@dataclass(frozen=True, slots=True)
class Relayed:
    """The outcome of ``ctx.relay()`` / ``ctx.forward()``; also the action that says "handled".

    Truthy when at least one branch was handed to a transport (or is being
    resolved). A falsy result carries ``error``; returning it from the script
    makes the core answer with the error's status unless the transaction
    already exists.
    """

    ok: bool
    branches: int = 0
    error: RelayError | None = None
    detail: str = ""

    def __bool__(self) -> bool:
        return self.ok
