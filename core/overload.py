"""When to shed load: a UDP receive queue that stays backed up.

The server samples the kernel's backlog of each UDP socket every ``interval``
seconds (``UdpTransport.backlog``). A single full sample is not overload: the
load generator, the kernel or the hypervisor deliver datagrams in bursts, and
a queue that drains within a few tens of milliseconds costs nothing (SIP's
first retransmission waits 500 ms). Nor is a queue that is over the mark but
shrinking: after a pause of the process (a garbage collection, the hypervisor
taking the vCPU) a server near its limit drains the backlog slowly, and
shedding then would turn a harmless delay into failed calls. Overload is a
queue that stays over ``fraction`` of its buffer for ``sustain`` seconds and
is no shorter at the end of that time than at its start: the server is not
catching up, and answering new requests 503 at once beats collapsing into
retransmissions. It ends with the first sample under the mark.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable


class OverloadDetector:
    """Turns backlog samples into the ``overloaded`` flag (pure: no clock, no I/O)."""

    __slots__ = ("fraction", "needed", "_levels", "overloaded")

    def __init__(self, fraction: float, sustain: float, interval: float) -> None:
        self.fraction = fraction
        # Sample intervals that make ``sustain`` seconds (0: the first full sample is enough).
        self.needed = max(0, round(sustain / interval))
        # Fill levels of the current run of samples over the mark, the last needed + 1.
        self._levels: deque[float] = deque(maxlen=self.needed + 1)
        self.overloaded = False

    def sample(self, backlogs: Iterable[tuple[int, int] | None]) -> bool:
        """Feed one sample, ``(queued bytes, buffer size)`` per socket (None: unknown).

        Returns the new value of :attr:`overloaded`.
        """
        level = max((b[0] / b[1] for b in backlogs if b is not None and b[1]), default=0.0)
        levels = self._levels
        if level > self.fraction:
            levels.append(level)
            if len(levels) > self.needed and levels[-1] >= levels[0]:
                self.overloaded = True
        else:
            levels.clear()
            self.overloaded = False
        return self.overloaded
