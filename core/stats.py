"""Statistics: counters and gauges named ``group:name``, exact across forked workers.

Every statistic that has a value of its own lives in one int64 slot of a shared
anonymous memory map created before the workers fork (:class:`SharedSlots`).
Each worker has its own row of slots and is the only process that writes it,
so an increment is one unlocked ``row[index] += 1`` on a memoryview and stays
exact; readers sum the column over every worker's row. Nothing on the message
path takes a lock, logs, or looks a name up: the core binds its counters to
fixed indices (:data:`RCV_REQUESTS`...) and plugins keep the :class:`Counter`
that ``register`` returned.

Kinds of statistic:

- **counter**, no function: a slot; :meth:`Counter.inc`. Summed over workers.
- **counter with** ``function=``: the plugin counts in its own object; each
  worker copies ``function()`` into its slot every timer tick (and the worker
  serving a read just before reading), and readers sum the slots.
- **gauge**, no function: a slot set with :meth:`Gauge.set`; summed over workers.
- **gauge with** ``function=``: computed on read, in the worker that serves
  the MI request (with several workers: that worker's view only), unless it is
  registered with ``per_worker=True``: then it is published and summed like a
  function counter (the core's ``tm:inuse_transactions``, ``core:rss_bytes``).

``reset_statistics`` does not write other workers' slots (that would race with
their increments): it records the current total as a baseline in a row of its
own, written only by the worker that serves MI, and readers subtract it.
"""

from __future__ import annotations

import asyncio
import mmap
import os
import re
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

#: Statistic slots per worker row (beyond the header); ``register`` fails past it.
DEFAULT_CAPACITY = 1024
#: Slots at the start of each row: see the ``H_*`` indices.
HEADER = 8
H_PID = 0  # worker rows: the worker's pid; row 0: the supervisor's pid (0: none)
H_FLAGS = 1  # worker rows: F_* bits
H_STARTED = 2  # worker rows: start time, Unix milliseconds
F_RUNNING = 1
F_MI = 2

#: The core's counters, in slot order: their indices are the constants below,
#: identical in every worker, so the message path increments ``row[CONSTANT]``.
CORE_COUNTERS: tuple[tuple[str, str], ...] = (
    ("core:rcv_requests", "requests received"),
    ("core:rcv_replies", "replies received"),
    ("core:fwd_requests", "requests forwarded (each branch, stateful or stateless)"),
    ("core:fwd_replies", "replies forwarded upstream"),
    ("core:drop_requests", "requests dropped by a routing decision"),
    ("core:drop_replies", "replies dropped (by route_reply, or strays nobody asked for)"),
    ("core:err_requests", "requests whose routing failed with an error (answered 500)"),
    ("core:bad_msg_hdr", "messages that could not be parsed"),
    ("tm:UAS_transactions", "server transactions created"),
    ("tm:UAC_transactions", "client transactions created"),
    ("tm:2xx_transactions", "server transactions completed with a 2xx"),
    ("tm:3xx_transactions", "server transactions completed with a 3xx"),
    ("tm:4xx_transactions", "server transactions completed with a 4xx"),
    ("tm:5xx_transactions", "server transactions completed with a 5xx"),
    ("tm:6xx_transactions", "server transactions completed with a 6xx"),
)
(
    RCV_REQUESTS,
    RCV_REPLIES,
    FWD_REQUESTS,
    FWD_REPLIES,
    DROP_REQUESTS,
    DROP_REPLIES,
    ERR_REQUESTS,
    BAD_MSG_HDR,
    UAS_TRANSACTIONS,
    UAC_TRANSACTIONS,
    TM_2XX,
    TM_3XX,
    TM_4XX,
    TM_5XX,
    TM_6XX,
) = range(len(CORE_COUNTERS))
#: ``row[TM_FINAL_BASE + status // 100] += 1`` counts a final response class (2..6).
TM_FINAL_BASE = TM_2XX - 2

KINDS = ("counter", "gauge")


class StatisticsError(ValueError):
    """A statistic cannot be registered, or a name asked for does not exist."""


class SharedSlots:
    """Rows of int64 slots in an anonymous ``MAP_SHARED`` mapping, inherited by forks.

    Row 0 is global (the supervisor's pid), rows ``1..workers`` belong to one
    worker each, the last row holds the reset baselines. Create it before
    forking; every process then reads and writes the same memory.
    """

    def __init__(self, workers: int = 1, capacity: int = DEFAULT_CAPACITY) -> None:
        if workers < 1:
            raise ValueError("workers must be at least 1")
        self.workers = workers
        self.capacity = capacity
        self.width = HEADER + capacity
        self._map = mmap.mmap(-1, (workers + 2) * self.width * 8)
        self.slots = memoryview(self._map).cast("q")

    def _row(self, row: int) -> int:
        return row * self.width

    def header(self, worker: int) -> memoryview:
        start = self._row(worker + 1)
        return self.slots[start : start + HEADER]

    def row(self, worker: int) -> memoryview:
        """Worker ``worker``'s statistic slots (index 0 is the first statistic)."""
        start = self._row(worker + 1) + HEADER
        return self.slots[start : start + self.capacity]

    def baselines(self) -> memoryview:
        start = self._row(self.workers + 1) + HEADER
        return self.slots[start : start + self.capacity]

    def total(self, index: int) -> int:
        """The sum of slot ``index`` over every worker."""
        slots, width = self.slots, self.width
        first = width + HEADER + index
        return sum(slots[first + w * width] for w in range(self.workers))

    @property
    def supervisor_pid(self) -> int:
        return self.slots[H_PID]

    @supervisor_pid.setter
    def supervisor_pid(self, pid: int) -> None:
        self.slots[H_PID] = pid

    def mark_started(self, worker: int, *, mi: bool) -> None:
        header = self.header(worker)
        header[H_PID] = os.getpid()
        header[H_STARTED] = int(time.time() * 1000)
        header[H_FLAGS] = F_RUNNING | (F_MI if mi else 0)

    def mark_stopped(self, worker: int) -> None:
        header = self.header(worker)
        header[H_FLAGS] = header[H_FLAGS] & ~F_RUNNING

    def processes(self) -> list[dict[str, Any]]:
        """What every worker wrote in its header: pid, start time, flags."""
        out = []
        for w in range(self.workers):
            header = self.header(w)
            out.append({
                "worker": w,
                "pid": header[H_PID],
                "running": bool(header[H_FLAGS] & F_RUNNING),
                "mi": bool(header[H_FLAGS] & F_MI),
                "started": header[H_STARTED] / 1000.0,
            })
        return out


class Counter:
    """A counter's handle: ``inc()`` adds to this worker's slot (no lock needed)."""

    __slots__ = ("_index", "_row", "name")

    def __init__(self, name: str, row: memoryview, index: int) -> None:
        self.name = name
        self._row = row
        self._index = index

    def inc(self, amount: int = 1) -> None:
        self._row[self._index] += amount

    @property
    def local(self) -> int:
        """This worker's share of the count."""
        return int(self._row[self._index])


class Gauge(Counter):
    """A gauge's handle: ``set``, ``inc`` and ``dec`` this worker's value (summed on read)."""

    __slots__ = ()

    def set(self, value: int) -> None:
        self._row[self._index] = int(value)

    def dec(self, amount: int = 1) -> None:
        self._row[self._index] -= amount


@dataclass
class Statistic:
    """One registered statistic (what ``list_statistics`` shows)."""

    name: str
    kind: str
    help: str = ""
    plugin: str = "core"
    function: Callable[[], Any] | None = None
    #: Slot index, or None for a gauge computed on read in the serving worker.
    index: int | None = None
    #: The value is this worker's (a function published into its slot, summed).
    published: bool = False
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def group(self) -> str:
        return self.name.partition(":")[0]

    @property
    def resettable(self) -> bool:
        return self.kind == "counter"


class Statistics:
    """The statistics of one worker, reading the totals of all of them.

    ``values`` is this worker's row: ``values[RCV_REQUESTS] += 1`` is how the
    core counts. The core counters are registered first, in
    :data:`CORE_COUNTERS` order; the rest get slots in registration order,
    which is the same in every worker (same configuration, same plugins).
    """

    def __init__(self, shared: SharedSlots | None = None, worker: int = 0) -> None:
        self.shared = shared if shared is not None else SharedSlots()
        if not 0 <= worker < self.shared.workers:
            raise ValueError(f"worker {worker} out of range 0..{self.shared.workers - 1}")
        self.worker = worker
        self.values = self.shared.row(worker)
        self._baselines = self.shared.baselines()
        self._stats: dict[str, Statistic] = {}
        self._next = 0
        self._published: list[Statistic] = []
        self._prometheus: Any = None
        for name, text in CORE_COUNTERS:
            self.register(name, kind="counter", help=text)

    # ------------------------------------------------------------- registration
    def register(
        self,
        name: str,
        *,
        kind: str | None = None,
        function: Callable[[], Any] | None = None,
        help: str = "",
        plugin: str = "core",
        per_worker: bool | None = None,
        **meta: Any,
    ) -> Counter | Gauge | None:
        """Declare ``group:name``; returns the handle to update it (None when computed).

        :param kind: ``"counter"`` or ``"gauge"``; default: gauge with a
            function, counter without.
        :param function: computes the value on read.
        :param per_worker: the function's value is this worker's only (sum it
            over workers); default True for counters, False for gauges.
        :raises StatisticsError: bad name or kind, duplicate, or no slot left.
        """
        group, sep, stat = name.partition(":")
        if not sep or not group or not stat:
            raise StatisticsError(f"statistic {name!r} must be named 'group:name'")
        if name in self._stats:
            raise StatisticsError(
                f"statistic {name!r} is already registered by {self._stats[name].plugin!r}"
            )
        if kind is None:
            kind = "gauge" if function is not None else "counter"
        if kind not in KINDS:
            raise StatisticsError(
                f"statistic {name!r}: kind must be 'counter' or 'gauge', got {kind!r}"
            )
        if function is not None and not callable(function):
            raise StatisticsError(f"statistic {name!r}: function must be callable")
        if per_worker is None:
            per_worker = kind == "counter"
        entry = Statistic(name, kind, help, plugin, function, meta=meta)
        if function is None or per_worker:
            if self._next >= self.shared.capacity:
                raise StatisticsError(
                    f"statistic {name!r}: no slot left ({self.shared.capacity} statistics at most)"
                )
            entry.index = self._next
            self._next += 1
            entry.published = function is not None
            if entry.published:
                self._published.append(entry)
        self._stats[name] = entry
        if function is not None:
            return None
        cls = Counter if kind == "counter" else Gauge
        assert entry.index is not None
        return cls(name, self.values, entry.index)

    def handle(self, name: str) -> Counter | Gauge:
        """The handle of a slot statistic registered without a function."""
        entry = self._stats.get(name)
        if entry is None or entry.index is None or entry.published:
            raise StatisticsError(f"statistic {name!r} has no handle (unknown or computed)")
        cls = Counter if entry.kind == "counter" else Gauge
        return cls(name, self.values, entry.index)

    # ------------------------------------------------------------------ reading
    def __contains__(self, name: object) -> bool:
        return name in self._stats

    def __iter__(self) -> Iterator[Statistic]:
        return iter(self._stats.values())

    def __len__(self) -> int:
        return len(self._stats)

    @property
    def groups(self) -> list[str]:
        return list(dict.fromkeys(s.group for s in self._stats.values()))

    def select(self, patterns: Iterable[str]) -> list[Statistic]:
        """The statistics named by ``patterns``: ``group:name``, ``group:`` or ``all``.

        :raises StatisticsError: for a name or group nobody registered.
        """
        chosen: dict[str, Statistic] = {}
        for pattern in patterns:
            if pattern == "all":
                chosen.update(self._stats)
            elif pattern.endswith(":"):
                group = pattern[:-1]
                found = {n: s for n, s in self._stats.items() if s.group == group}
                if not found:
                    raise StatisticsError(
                        f"no statistics group {group!r} (groups: {', '.join(self.groups)})"
                    )
                chosen.update(found)
            elif pattern in self._stats:
                chosen[pattern] = self._stats[pattern]
            else:
                raise StatisticsError(
                    f"unknown statistic {pattern!r} (list_statistics shows every name)"
                )
        return list(chosen.values())

    def publish(self) -> None:
        """Copy this worker's function values into its slots (timer tick, before reads)."""
        values = self.values
        for entry in self._published:
            try:
                values[entry.index] = int(entry.function())  # type: ignore[index,misc]
            except Exception:  # noqa: BLE001, S112 - a broken function keeps its last value
                continue

    def value(self, entry: Statistic) -> int | float:
        """The current value: summed over workers, minus the reset baseline."""
        if entry.index is None:
            assert entry.function is not None
            result = entry.function()
            return result if isinstance(result, (int, float)) else int(result)
        total = self.shared.total(entry.index)
        if entry.resettable:
            total -= self._baselines[entry.index]
        return total

    def get(self, patterns: Iterable[str] = ("all",)) -> dict[str, int | float]:
        """``{name: value}`` for ``patterns`` (see :meth:`select`)."""
        chosen = self.select(patterns)
        self.publish()
        return {s.name: self.value(s) for s in chosen}

    def reset(self, patterns: Iterable[str]) -> list[str]:
        """Set the counters among ``patterns`` back to zero; gauges are left alone.

        Only the worker serving MI calls it: the baselines row is its alone.
        """
        chosen = [s for s in self.select(patterns) if s.resettable]
        self.publish()
        for entry in chosen:
            assert entry.index is not None
            self._baselines[entry.index] = self.shared.total(entry.index)
        return [s.name for s in chosen]

    async def publish_every(self, interval: float) -> None:
        """Publish the per-worker function values forever (a background task)."""
        while True:
            await asyncio.sleep(interval)
            self.publish()

    # --------------------------------------------------------------- prometheus
    def prometheus(self) -> tuple[bytes, str]:
        """The Prometheus text exposition of every statistic, and its content type."""
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        if self._prometheus is None:
            from prometheus_client import CollectorRegistry

            registry = CollectorRegistry(auto_describe=False)
            registry.register(_Collector(self))  # type: ignore[arg-type]
            self._prometheus = registry
        return generate_latest(self._prometheus), CONTENT_TYPE_LATEST


_UNSAFE = re.compile(r"[^a-zA-Z0-9_]")


def metric_name(stat: str) -> str:
    """The Prometheus name of a statistic: ``tm:2xx_transactions`` -> ``sipline_tm_2xx_transactions``.

    Counters get the ``_total`` suffix in the exposition, as Prometheus wants.
    """
    return "sipline_" + _UNSAFE.sub("_", stat.replace(":", "_", 1))


class _Collector:
    def __init__(self, stats: Statistics) -> None:
        self.stats = stats

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        stats = self.stats
        stats.publish()
        seen: set[str] = set()
        for entry in stats:
            name = metric_name(entry.name)
            if name in seen:
                continue  # two statistics that differ only in punctuation
            seen.add(name)
            try:
                value = float(stats.value(entry))
            except Exception:  # noqa: BLE001, S112 - one broken gauge must not hide the rest
                continue
            text = f"{entry.name}: {entry.help}" if entry.help else entry.name
            if entry.kind == "counter":
                yield CounterMetricFamily(name, text, value=max(value, 0.0))
            else:
                yield GaugeMetricFamily(name, text, value=value)


def rss_bytes() -> int:
    """This process's resident set size (Linux ``/proc``; else the peak from getrusage)."""
    try:
        with open("/proc/self/statm", "rb") as fh:
            return int(fh.read().split()[1]) * mmap.PAGESIZE
    except (OSError, ValueError, IndexError):
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def register_core_gauges(stats: Statistics, server: Any) -> None:
    """The core's gauges, computed from the server (published per worker, summed)."""

    def transactions() -> int:
        layer = server.proxy.layer
        return len(layer) if layer is not None else 0

    def connections() -> int:
        return sum(len(getattr(t, "connections", ())) for t in server.transports)

    stats.register("tm:inuse_transactions", kind="gauge", function=transactions, per_worker=True,
                   help="transactions in the table (server and client)")
    stats.register("core:tcp_connections", kind="gauge", function=connections, per_worker=True,
                   help="open TCP connections")
    stats.register("core:rss_bytes", kind="gauge", function=rss_bytes, per_worker=True,
                   help="resident memory of the server processes (sum over workers)")
    stats.register("core:shed_requests", kind="counter",
                   function=lambda: server.shed_requests,
                   help="requests answered 503 while overloaded")


__all__ = [
    "BAD_MSG_HDR", "CORE_COUNTERS", "DROP_REPLIES", "DROP_REQUESTS", "ERR_REQUESTS",
    "FWD_REPLIES", "FWD_REQUESTS", "RCV_REPLIES", "RCV_REQUESTS", "TM_2XX", "TM_3XX",
    "TM_4XX", "TM_5XX", "TM_6XX", "TM_FINAL_BASE", "UAC_TRANSACTIONS", "UAS_TRANSACTIONS",
    "Counter", "Gauge", "SharedSlots", "Statistic", "Statistics", "StatisticsError",
    "metric_name", "register_core_gauges", "rss_bytes",
]
