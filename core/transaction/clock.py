"""Time sources for the transaction layer.

Transactions never sleep and never touch an event loop: they ask a :class:`Clock` to call them
back later. Production code passes an :class:`AsyncioClock`; tests pass a :class:`FakeClock`
and move time by hand, so that every RFC 3261 timer can be checked to the millisecond without
waiting for it.
"""

from __future__ import annotations

import heapq
import itertools
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:  # pragma: no cover - typing only: this module must stay asyncio-free
    import asyncio

__all__ = [
    "Clock", "TimerHandle", "AsyncioClock", "WheelClock", "WheelTimer", "FakeClock",
    "FakeTimerHandle",
]

log = logging.getLogger(__name__)


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


class WheelTimer:
    """A callback scheduled on a :class:`WheelClock`; ``callback`` is None once cancelled or fired."""

    __slots__ = ("callback", "args", "bucket")

    def __init__(
        self,
        callback: Callable[..., object],
        args: tuple[Any, ...],
        bucket: dict[WheelTimer, None],
    ) -> None:
        self.callback: Callable[..., object] | None = callback
        self.args = args
        self.bucket: dict[WheelTimer, None] | None = bucket

    def cancel(self) -> None:
        bucket = self.bucket
        if bucket is not None:
            self.bucket = None
            self.callback = None  # drops the transaction the bound method holds
            self.args = ()
            bucket.pop(self, None)

    def __repr__(self) -> str:
        state = "" if self.callback is not None else " done"
        return f"<WheelTimer{state} {self.callback!r}>"


#: Slots a timer may wait in (beyond, the wheel ticks every slot instead of jumping to the
#: earliest one: finding it would cost more than the empty ticks).
_SPARSE = 64


class WheelClock:
    """:class:`Clock` whose timers live in a hashed wheel of ``tick``-second slots.

    One loop timer drives the whole wheel instead of one per transaction timer: an event-loop
    timer costs an allocation, a heap insertion and, once cancelled, a handle to close, and a
    call sets up about ten of them (Timers A, B, C, E, F, J, K, L, M) of which most are
    cancelled. Here scheduling is a dict insertion and cancelling a dict deletion.

    A callback runs at most one tick late and never early; timers of the same tick run in
    scheduling order. ``loop`` needs only ``time()`` and ``call_at()``.
    """

    __slots__ = ("loop", "time", "tick", "_inv", "_slots", "_done", "_handle", "_armed")

    def __init__(self, loop: Any, tick: float = 0.01) -> None:
        if tick <= 0:
            raise ValueError("the wheel's tick must be positive")
        self.loop = loop
        self.time: Callable[[], float] = loop.time
        self.tick = tick
        self._inv = 1.0 / tick
        self._slots: dict[int, dict[WheelTimer, None]] = {}
        self._done = int(loop.time() * self._inv)  # the last slot run
        self._handle: Any = None
        self._armed = 0  # the slot the loop timer is set for

    def call_later(self, delay: float, callback: Callable[..., object], *args: Any) -> WheelTimer:
        slot = int((self.time() + delay) * self._inv) + 1
        if slot <= self._done:
            slot = self._done + 1
        slots = self._slots
        bucket = slots.get(slot)
        if bucket is None:
            bucket = slots[slot] = {}
        timer = WheelTimer(callback, args, bucket)
        bucket[timer] = None
        if self._handle is None or slot < self._armed:
            self._arm(slot)
        return timer

    @property
    def pending(self) -> int:
        """How many callbacks are scheduled and not cancelled."""
        return sum(len(bucket) for bucket in self._slots.values())

    def close(self) -> None:
        """Stop the wheel's loop timer and forget every timer (at shutdown)."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        for bucket in self._slots.values():
            for timer in bucket:
                timer.bucket = None
                timer.callback = None
        self._slots.clear()

    def _arm(self, slot: int) -> None:
        if self._handle is not None:
            self._handle.cancel()
        self._armed = slot
        self._handle = self.loop.call_at(slot * self.tick, self._run)

    def _run(self) -> None:
        self._handle = None
        last = int(self.time() * self._inv)
        slots = self._slots
        done = self._done
        if last - done <= len(slots):
            due = [s for s in range(done + 1, last + 1) if s in slots]
        else:
            due = sorted(s for s in slots if s <= last)
        self._done = last if last > done else done
        for slot in due:
            bucket = slots.pop(slot)
            # A callback may cancel another timer of this bucket: iterate over a copy.
            for timer in list(bucket):
                callback = timer.callback
                if callback is None:
                    continue
                args = timer.args
                timer.callback = None
                timer.bucket = None
                timer.args = ()
                try:
                    callback(*args)
                except Exception:  # one broken callback must not stop the others
                    log.exception("timer callback %r failed", callback)
        if slots:
            self._arm(min(slots) if len(slots) <= _SPARSE else self._done + 1)


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
