"""When to shed load: a UDP receive queue that stays backed up.

The server samples the kernel's backlog of each UDP socket every ``interval``
seconds (``UdpTransport.backlog``). A single full sample is not overload: the
load generator, the kernel or the hypervisor deliver datagrams in bursts, and
a queue that drains within a few tens of milliseconds costs nothing (SIP's
first retransmission waits 500 ms). Overload is a queue that stays over
``fraction`` of its buffer for ``sustain`` seconds: the server is not catching
up, and answering new requests 503 at once beats collapsing into
retransmissions. It ends with the first sample under the mark.
"""

from __future__ import annotations

from collections.abc import Iterable


class OverloadDetector:
    """Turns backlog samples into the ``overloaded`` flag (pure: no clock, no I/O)."""

    __slots__ = ("fraction", "needed", "_over_for", "overloaded")

    def __init__(self, fraction: float, sustain: float, interval: float) -> None:
        self.fraction = fraction
        # Consecutive full samples that make ``sustain`` seconds (at least one).
        self.needed = max(1, round(sustain / interval))
        self._over_for = 0
        self.overloaded = False

    def sample(self, backlogs: Iterable[tuple[int, int] | None]) -> bool:
        """Feed one sample, ``(queued bytes, buffer size)`` per socket (None: unknown).

        Returns the new value of :attr:`overloaded`.
        """
        fraction = self.fraction
        full = any(b is not None and b[1] and b[0] > b[1] * fraction for b in backlogs)
        if full:
            self._over_for += 1
            if self._over_for >= self.needed:
                self.overloaded = True
        else:
            self._over_for = 0
            self.overloaded = False
        return self.overloaded
