"""The location service in memory: bindings of addresses-of-record to contacts.

:class:`LocationStore` is the store of the ``memory`` mode and the cache the
``write-through`` and ``write-back`` modes put in front of SQL
(:mod:`sipline_registrar.storage`). Everything here runs on the event loop.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field

#: OpenSIPS's method bitmask (``methods`` column of ``location``); any other method is OTHER.
METHOD_BITS = {
    "INVITE": 1, "CANCEL": 2, "ACK": 4, "BYE": 8, "INFO": 16, "OPTIONS": 32, "UPDATE": 64,
    "REGISTER": 128, "MESSAGE": 256, "SUBSCRIBE": 512, "NOTIFY": 1024, "PRACK": 2048,
    "REFER": 4096, "PUBLISH": 8192,
}
METHOD_OTHER = 16384


def method_bit(method: str) -> int:
    """The bit of ``method`` in OpenSIPS's bitmask (METHOD_OTHER for extension methods)."""
    return METHOD_BITS.get(method.upper(), METHOD_OTHER)


def methods_mask(methods: Iterable[str]) -> int:
    """The bitmask of a list of method names (an Allow header's tokens)."""
    mask = 0
    for m in methods:
        m = m.strip()
        if m:
            mask |= method_bit(m)
    return mask


@dataclass(slots=True)
class Binding:
    """One contact registered for an AOR (the columns of OpenSIPS's ``location`` table).

    Bindings are never changed in place: a refresh stores a new object, so the SQL
    writer thread may read one while the event loop goes on.
    """

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
    methods: int | None = None  # METHOD_BITS mask from Allow; None: every method
    #: Via branch of the REGISTER that wrote it (memory only, not stored in SQL): its
    #: retransmissions, answered statelessly, are recognised and change nothing.
    branch: str | None = None

    def allows(self, method: str) -> bool:
        """False when the binding's Allow excludes ``method`` (lookup skips it)."""
        return self.methods is None or bool(self.methods & method_bit(method))


def best_first(bindings: Iterable[Binding]) -> list[Binding]:
    """RFC 3261 §10.2.1.2 ordering: highest q first, then the oldest registration."""
    return sorted(bindings, key=lambda b: (-(b.q if b.q is not None else 1.0), b.created))


class LocationStore:
    """AOR -> contact key -> binding, with expiry. Memory only (OpenSIPS usrloc ``db_mode=0``).

    The contact key is the Contact URI as the registrar normalised it.
    """

    #: True when :meth:`flush` must be called periodically (write-back).
    periodic_flush = False

    def __init__(self) -> None:
        self._aors: dict[str, dict[str, Binding]] = {}

    def bindings(self, aor: str, now: float) -> list[Binding]:
        """The live bindings of ``aor``, best q first."""
        found = self._aors.get(aor)
        if not found:
            return []
        return best_first(b for b in found.values() if b.expires > now)

    def entries(self, aor: str) -> Mapping[str, Binding]:
        """Every binding of ``aor`` by contact key, expired ones included (read only)."""
        return self._aors.get(aor, {})

    def get(self, aor: str, key: str) -> Binding | None:
        return self._aors.get(aor, {}).get(key)

    def put(self, aor: str, key: str, binding: Binding) -> None:
        self._aors.setdefault(aor, {})[key] = binding

    def replace(self, aor: str, bindings: Mapping[str, Binding]) -> None:
        """Make ``bindings`` the complete set of ``aor`` (empty: the AOR goes)."""
        if bindings:
            self._aors[aor] = dict(bindings)
        else:
            self._aors.pop(aor, None)

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
        return len(self._drop_expired(now))

    def _drop_expired(self, now: float) -> list[tuple[str, str]]:
        gone = []
        for aor in list(self._aors):
            found = self._aors[aor]
            for key in [k for k, b in found.items() if b.expires <= now]:
                del found[key]
                gone.append((aor, key))
            if not found:
                del self._aors[aor]
        return gone

    def aors(self) -> list[str]:
        """Every AOR with at least one binding (expired ones included)."""
        return list(self._aors)

    def __iter__(self) -> Iterator[tuple[str, Mapping[str, Binding]]]:
        return iter(list(self._aors.items()))

    def flush(self) -> int:
        """Hand pending changes to durable storage (none in memory); returns how many."""
        return 0

    def close(self) -> None:
        """Release what the store holds (nothing in memory). May block: call it off the loop."""

    @property
    def users(self) -> int:
        return len(self._aors)

    @property
    def contacts(self) -> int:
        return sum(len(v) for v in self._aors.values())
