"""The location service in memory: bindings of addresses-of-record to contacts.

:class:`LocationStore` is the store of the ``memory`` mode and the cache the
``write-through`` and ``write-back`` modes put in front of SQL
(:mod:`sipline_registrar.storage`). Everything here runs on the event loop.
"""

from __future__ import annotations

import heapq

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
        self._contacts = 0
        # (expires, aor, key) of every binding stored, oldest first: expiry pops what
        # is due instead of scanning every binding each tick. Entries of bindings that
        # were refreshed or removed since are stale and skipped when they come up.
        self._expiry: list[tuple[float, str, str]] = []

    def _due(self, aor: str, key: str, binding: Binding) -> None:
        heapq.heappush(self._expiry, (binding.expires, aor, key))

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
        found = self._aors.setdefault(aor, {})
        if key not in found:
            self._contacts += 1
        found[key] = binding
        self._due(aor, key, binding)

    def replace(self, aor: str, bindings: Mapping[str, Binding]) -> None:
        """Make ``bindings`` the complete set of ``aor`` (empty: the AOR goes)."""
        old = self._aors.get(aor)
        if old is not None:
            self._contacts -= len(old)
        if bindings:
            self._aors[aor] = dict(bindings)
            self._contacts += len(bindings)
            for key, binding in bindings.items():
                if old is None or old.get(key) is not binding:
                    self._due(aor, key, binding)
        else:
            self._aors.pop(aor, None)

    def remove(self, aor: str, key: str) -> None:
        found = self._aors.get(aor)
        if found is not None and found.pop(key, None) is not None:
            self._contacts -= 1
            if not found:
                del self._aors[aor]

    def remove_aor(self, aor: str) -> None:
        found = self._aors.pop(aor, None)
        if found:
            self._contacts -= len(found)

    def count(self, aor: str) -> int:
        return len(self._aors.get(aor, ()))

    def expire(self, now: float) -> int:
        """Drop every expired binding; returns how many."""
        return len(self._drop_expired(now))

    def _drop_expired(self, now: float) -> list[tuple[str, str]]:
        gone: list[tuple[str, str]] = []
        heap = self._expiry
        aors = self._aors
        while heap and heap[0][0] <= now:
            _, aor, key = heapq.heappop(heap)
            found = aors.get(aor)
            if found is None:
                continue
            binding = found.get(key)
            if binding is None or binding.expires > now:
                continue  # removed, or refreshed: a later entry stands for it
            del found[key]
            self._contacts -= 1
            gone.append((aor, key))
            if not found:
                del aors[aor]
        # Refreshes leave stale entries behind: rebuild when they outnumber the live ones.
        if len(heap) > 2 * self._contacts + 1024:
            self._expiry = [(b.expires, a, k) for a, f in aors.items() for k, b in f.items()]
            heapq.heapify(self._expiry)
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
        return self._contacts
