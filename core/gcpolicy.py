"""How a running server uses Python's cyclic garbage collector.

Reference counting frees the per-message objects at once: the message path makes no
reference cycles (tests/core/hooks/test_hook_registries.py checks the script-API one). What
the collector sees is what outlives a message: finished transactions wait up to 64*T1 = 32 s
for retransmissions (Timers J, L, M), so at 2,000 calls/s about a million tracked objects
are alive. A collection scans every object of the generations it covers. With the
thresholds sipline used before (50,000 young objects, the middle generation every 20th time)
a middle-generation collection paused for 402 ms in bench/proxy_path.py's 60,000 calls, long
enough to fill the UDP queues and shed calls.

So a running server:

* collects young objects after ``GC_THRESHOLDS[0]`` new ones, and every second collection
  covers the middle generation too (threshold 0), so a pause scans at most about two
  batches of young objects and survivors reach the old generation after two collections.
  Small batches are also cheaper in all (the objects are still in the CPU caches): over
  40,000 calls of bench/proxy_path.py, 0.3-0.4 s of collections in all with 10,000, 0.5-0.6 s
  with 50,000; the longest pause in the 60,000-call run, 5 ms;
* collects the old generation itself (a full collection, whose pause grows with the
  number of live transactions) on its own schedule (:class:`FullCollections`): when the
  server is quiet, at most every ``quiet_every`` seconds, and under constant load every
  ``force_every`` seconds, so that cyclic garbage (a plugin's, an exception's) cannot pile
  up. CPython's own trigger for it is pushed out of reach by ``GC_THRESHOLDS[2]``.
"""

from __future__ import annotations

#: ``gc.set_threshold`` of a running server (see the module docstring).
GC_THRESHOLDS = (10_000, 0, 1_000_000)


class FullCollections:
    """Decides when a full collection is due (pure: the caller passes the time and load).

    :param quiet_below: live transactions under which the server counts as quiet (a full
        collection then scans few objects).
    :param quiet_every: seconds between full collections while quiet.
    :param force_every: seconds after which one runs whatever the load.
    """

    __slots__ = ("quiet_below", "quiet_every", "force_every", "last")

    def __init__(
        self, quiet_below: int = 5_000, quiet_every: float = 60.0, force_every: float = 600.0
    ) -> None:
        self.quiet_below = quiet_below
        self.quiet_every = quiet_every
        self.force_every = force_every
        self.last: float | None = None

    def due(self, now: float, live_transactions: int) -> bool:
        """Whether to run a full collection now; the first call only starts the clock."""
        last = self.last
        if last is None:
            self.last = now
            return False
        wait = self.quiet_every if live_transactions < self.quiet_below else self.force_every
        if now - last < wait:
            return False
        self.last = now
        return True
