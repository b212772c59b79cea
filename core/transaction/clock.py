"""Time sources for the transaction layer.

Transactions never sleep and never touch an event loop: they ask a :class:`Clock` to call them
back later. Production code passes an :class:`AsyncioClock`; tests pass a :class:`FakeClock`
and move time by hand, so that every RFC 3261 timer can be checked to the millisecond without
waiting for it.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:  # pragma: no cover - typing only: this module must stay asyncio-free
    import asyncio

__all__ = ["Clock", "TimerHandle", "AsyncioClock", "FakeClock", "FakeTimerHandle"]


class TimerHandle(Protocol):
    """What :meth:`Clock.call_later` returns; ``asyncio.TimerHandle`` is one."""

    def cancel(self) -> None: ...


class Clock(Protocol):
    """A monotonic time source that can schedule callbacks."""

    def time(self) -> float:
        """Monotonic seconds (only differences are meaningful)."""
        ...

    def call_later(self, delay: float, callback: Callable[..., object], *args: Any) -> TimerHandle:
        """Call ``callback(*args)`` once, ``delay`` seconds from now."""
        ...


class AsyncioClock:
    """:class:`Clock` on an asyncio event loop (``loop.time`` / ``loop.call_later``).

    asyncio is only imported when no loop is given, so importing this module (and with it the
    whole transaction layer) stays free of asyncio.
    """

    __slots__ = ("loop", "time", "call_later")

    def __init__(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        if loop is None:
            import asyncio

            loop = asyncio.get_running_loop()
        self.loop = loop
        # Bound methods of the loop itself: no extra Python frame per timer on the hot path.
        self.time: Callable[[], float] = loop.time
        self.call_later: Callable[..., TimerHandle] = loop.call_later


class FakeTimerHandle:
    """A timer scheduled on a :class:`FakeClock`."""

    __slots__ = ("when", "callback", "args", "cancelled")

    def __init__(self, when: float, callback: Callable[..., object], args: tuple[Any, ...]) -> None:
        self.when = when
        self.callback = callback
        self.args = args
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True

    def __repr__(self) -> str:
        state = " cancelled" if self.cancelled else ""
        return f"<FakeTimerHandle at {self.when:.3f}{state} {self.callback!r}>"


class FakeClock:
    """A manual clock for tests: time moves only in :meth:`advance`.

    Due callbacks run in time order (ties in scheduling order) and the clock shows each
    callback's own due time while it runs, so a timer that re-arms itself from its callback
    is scheduled relative to the moment it fired, exactly as on a real loop.
    """

    def __init__(self, start: float = 0.0) -> None:
        self._now = start
        self._heap: list[tuple[float, int, FakeTimerHandle]] = []
        self._seq = itertools.count()

    def time(self) -> float:
        return self._now

    def call_later(
        self, delay: float, callback: Callable[..., object], *args: Any
    ) -> FakeTimerHandle:
        if delay < 0:
            delay = 0.0
        handle = FakeTimerHandle(self._now + delay, callback, args)
        heapq.heappush(self._heap, (handle.when, next(self._seq), handle))
        return handle

    def advance(self, seconds: float = 0.0) -> int:
        """Move time forward by ``seconds``, firing every callback that falls due on the way
        (including those scheduled by the callbacks themselves). Returns how many ran."""
        if seconds < 0:
            raise ValueError("a clock cannot go backwards")
        target = self._now + seconds
        heap = self._heap
        fired = 0
        while heap and heap[0][0] <= target:
            when, _, handle = heapq.heappop(heap)
            if handle.cancelled:
                continue
            self._now = when
            handle.cancelled = True  # fired: a late cancel() is a harmless no-op
            fired += 1
            handle.callback(*handle.args)
        self._now = target
        return fired

    def run_all(self, limit: float = 86400.0) -> int:
        """Advance until nothing is scheduled (at most ``limit`` seconds). Returns how many
        callbacks ran."""
        fired = 0
        end = self._now + limit
        while True:
            self._drop_cancelled()
            if not self._heap or self._heap[0][0] > end:
                return fired
            fired += self.advance(self._heap[0][0] - self._now)

    def _drop_cancelled(self) -> None:
        heap = self._heap
        while heap and heap[0][2].cancelled:
            heapq.heappop(heap)

    @property
    def pending(self) -> int:
        """How many callbacks are scheduled and not cancelled."""
        return sum(1 for _, _, h in self._heap if not h.cancelled)

    def next_due(self) -> float | None:
        """The due time of the earliest live callback, or None."""
        self._drop_cancelled()
        return self._heap[0][0] if self._heap else None
