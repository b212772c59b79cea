"""The location service: bindings of addresses-of-record to contacts, in memory."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field


@dataclass(slots=True)
class Binding:
    """One contact registered for an AOR (the columns of OpenSIPS's ``location`` table)."""

    contact: str  # the Contact URI as registered (escaped, params and headers kept)
    expires: float  # absolute, on the clock given to the store
    q: float | None
    callid: str
    cseq: int
    received: str | None = None  # "sip:IP:PORT" when the request came from elsewhere
    path: tuple[str, ...] = ()
    instance: str | None = None  # +sip.instance
    reg_id: int | None = None
    user_agent: str | None = None
    socket: str | None = None  # the listener it arrived on, "udp:127.0.0.1:5060"
    flags: frozenset[str] = field(default_factory=frozenset)
    created: float = 0.0


class LocationStore:
    """AOR -> bindings, with expiry. Memory only (OpenSIPS usrloc ``db_mode=0``)."""

    def __init__(self) -> None:
        self._aors: dict[str, dict[str, Binding]] = {}

    def bindings(self, aor: str, now: float) -> list[Binding]:
        """The live bindings of ``aor``, best q first (RFC 3261 §10.2.1.2 ordering)."""
        found = self._aors.get(aor)
        if not found:
            return []
        live = [b for b in found.values() if b.expires > now]
        live.sort(key=lambda b: (-(b.q if b.q is not None else 1.0), b.created))
        return live

    def entries(self, aor: str) -> dict[str, Binding]:
        """Every binding of ``aor`` by contact key, expired ones included (read only)."""
        return self._aors.get(aor, {})

    def get(self, aor: str, key: str) -> Binding | None:
        return self._aors.get(aor, {}).get(key)

    def put(self, aor: str, key: str, binding: Binding) -> None:
        self._aors.setdefault(aor, {})[key] = binding

    def remove(self, aor: str, key: str) -> None:
        found = self._aors.get(aor)
        if found is not None:
            found.pop(key, None)
            if not found:
                del self._aors[aor]

    def remove_aor(self, aor: str) -> None:
        self._aors.pop(aor, None)

    def count(self, aor: str) -> int:
        return len(self._aors.get(aor, ()))

    def expire(self, now: float) -> int:
        """Drop every expired binding; returns how many."""
        gone = 0
        for aor in list(self._aors):
            found = self._aors[aor]
            for key in [k for k, b in found.items() if b.expires <= now]:
                del found[key]
                gone += 1
            if not found:
                del self._aors[aor]
        return gone

    def __iter__(self) -> Iterator[tuple[str, dict[str, Binding]]]:
        return iter(self._aors.items())

    @property
    def users(self) -> int:
        return len(self._aors)

    @property
    def contacts(self) -> int:
        return sum(len(v) for v in self._aors.values())
