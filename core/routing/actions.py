"""What a route stage decides: the actions returned by decision hooks.

Actions are small immutable values; the core executes them. There are no magic
return codes: each outcome is its own type.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Reply:
    """Answer the request locally with ``status`` (OpenSIPS ``sl_send_reply``)."""

    status: int
    reason: str | None = None
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""

    def __post_init__(self) -> None:
        if not 100 <= self.status <= 699:
            raise ValueError(f"reply status must be 100..699, got {self.status}")
        if self.reason is not None and ("\r" in self.reason or "\n" in self.reason):
            raise ValueError("reply reason must not contain CR or LF")


@dataclass(frozen=True, slots=True)
class Redirect:
    """Answer with a 3xx listing ``contacts`` (RFC 3261 §8.3), best first."""

    contacts: tuple[str, ...]
    status: int = 302
    reason: str | None = None
    headers: tuple[tuple[str, str], ...] = field(default=())

    def __post_init__(self) -> None:
        if not 300 <= self.status <= 399:
            raise ValueError(f"redirect status must be 3xx, got {self.status}")
        if not self.contacts and self.status != 380:
            raise ValueError("a redirect needs at least one contact")


@dataclass(frozen=True, slots=True)
class Drop:
    """Stop processing silently: no response, nothing forwarded."""


DROP = Drop()

Action = Reply | Redirect | Drop
