"""What a relay attempt reports back to the routing script."""

from __future__ import annotations

import enum


class RelayError(enum.Enum):
    """Why a relay did not happen; each maps to the reply the core sends if the script doesn't.

    Each value starts with the member's own name: members whose replies are the same
    (three 503s) must still be distinct members, not aliases of the first one.
    """

    NO_TARGET = ("no_target", 500, "No Destination")  # no branch to send to
    BAD_TARGET = ("bad_target", 416, "Unsupported URI Scheme")  # not a sip/sips URI
    UNRESOLVABLE = ("unresolvable", 503, "Service Unavailable")  # DNS gave no address
    SEND_FAILED = ("send_failed", 503, "Service Unavailable")  # the transport refused it
    NO_TRANSPORT = ("no_transport", 503, "Service Unavailable")  # no listener for it
    LOOP = ("loop", 482, "Loop Detected")  # RFC 3261 §16.3 step 4
    TOO_MANY_HOPS = ("too_many_hops", 483, "Too Many Hops")  # Max-Forwards 0 (§16.3 step 3)
    TRANSACTION_EXISTS = ("transaction_exists", 0, "")  # the existing transaction answers

    @property
    def status(self) -> int:
        return self.value[1]  # type: ignore[no-any-return]

    @property
    def reason(self) -> str:
        return self.value[2]  # type: ignore[no-any-return]


class Relayed:
    """The outcome of ``ctx.relay()`` / ``ctx.forward()``; also the action that says "handled".

    Truthy when at least one branch was handed to a transport (or is being
    resolved). A falsy result carries ``error``; returning it from the script
    makes the core answer with the error's status unless the transaction
    already exists. (A plain slotted class: one is made per relayed request,
    and a frozen dataclass's ``__init__`` costs several times more.)
    """

    __slots__ = ("ok", "branches", "error", "detail")

    def __init__(
        self, ok: bool, branches: int = 0, error: RelayError | None = None, detail: str = ""
    ) -> None:
        self.ok = ok
        self.branches = branches
        self.error = error
        self.detail = detail

    def __bool__(self) -> bool:
        return self.ok

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Relayed):
            return NotImplemented
        return (self.ok, self.branches, self.error, self.detail) == (
            other.ok, other.branches, other.error, other.detail
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return (
            f"Relayed(ok={self.ok}, branches={self.branches}, error={self.error}, "
            f"detail={self.detail!r})"
        )
