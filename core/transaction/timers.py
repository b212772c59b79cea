"""RFC 3261 timer values (§17, Table 4 of appendix A), with RFC 6026's Timers L and M and the
proxy's Timer C (§16.6 step 11).

Only T1, T2, T4, Timer D's floor, Timer C and the safety lifetime are settings; every other
timer is derived from them the way the RFC defines it, so an operator who shortens T1 on a
LAN gets consistently shorter retransmission and timeout intervals.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["TimerConfig", "DEFAULT_TIMERS"]


@dataclass(frozen=True, slots=True)
class TimerConfig:
    """Transaction timer settings, in seconds.

    :param t1: RTT estimate (Timer A, E, G initial values; 64*T1 is the transaction timeout).
    :param t2: the cap of non-INVITE request and INVITE response retransmission intervals.
    :param t4: how long a message may linger in the network (Timers I and K).
    :param d: Timer D over unreliable transports; the RFC asks for *at least* 32 s.
    :param c: the proxy's Timer C for INVITE client transactions. §16.6 step 11 asks for more
        than three minutes; the default is the customary 180 s and the value is not bounded
        from below, because operators routinely run shorter no-answer timeouts (OpenSIPS'
        ``fr_inv_timeout`` defaults to 120 s).
    :param max_lifetime: safety limit for server transactions that the TU never answers: one
        still in Trying/Proceeding after this long is terminated and reported. None disables
        it. It is deliberately far above Timer C, which is what normally produces the final
        response for an unanswered INVITE.
    """

    t1: float = 0.5
    t2: float = 4.0
    t4: float = 5.0
    d: float = 32.0
    c: float = 180.0
    max_lifetime: float | None = 3600.0

    def __post_init__(self) -> None:
        if not self.t1 > 0:
            raise ValueError(f"timer T1 must be positive, got {self.t1!r}")
        if not self.t2 >= self.t1:
            raise ValueError(f"timer T2 ({self.t2!r}) must not be below T1 ({self.t1!r})")
        if not self.t4 >= 0:
            raise ValueError(f"timer T4 must not be negative, got {self.t4!r}")
        if not self.d >= 0:
            raise ValueError(f"timer D must not be negative, got {self.d!r}")
        if not self.c > 0:
            raise ValueError(f"timer C must be positive, got {self.c!r}")
        if self.max_lifetime is not None and not self.max_lifetime > 0:
            raise ValueError(
                f"max_lifetime must be positive or None, got {self.max_lifetime!r}"
            )

    # Derived timers. Those that depend on the transport take ``reliable``: a reliable
    # transport does not lose messages, so there is nothing to wait for (value 0).

    @property
    def a(self) -> float:
        """INVITE request retransmission interval, initial value (unreliable only)."""
        return self.t1

    @property
    def b(self) -> float:
        """INVITE client transaction timeout."""
        return 64 * self.t1

    def d_for(self, reliable: bool) -> float:
        """Wait for response retransmissions in the INVITE client's Completed state."""
        return 0.0 if reliable else self.d

    @property
    def e(self) -> float:
        """Non-INVITE request retransmission interval, initial value (unreliable only)."""
        return self.t1

    @property
    def f(self) -> float:
        """Non-INVITE client transaction timeout."""
        return 64 * self.t1

    @property
    def g(self) -> float:
        """INVITE final response retransmission interval, initial value (unreliable only)."""
        return self.t1

    @property
    def h(self) -> float:
        """Wait time for the ACK of a non-2xx final response."""
        return 64 * self.t1

    def i_for(self, reliable: bool) -> float:
        """Wait for ACK retransmissions in the INVITE server's Confirmed state."""
        return 0.0 if reliable else self.t4

    def j_for(self, reliable: bool) -> float:
        """Wait for non-INVITE request retransmissions in the server's Completed state."""
        return 0.0 if reliable else 64 * self.t1

    def k_for(self, reliable: bool) -> float:
        """Wait for response retransmissions in the non-INVITE client's Completed state."""
        return 0.0 if reliable else self.t4

    @property
    def l(self) -> float:  # noqa: E743 - the RFC's name
        """RFC 6026: wait for INVITE retransmissions in the server's Accepted state."""
        return 64 * self.t1

    @property
    def m(self) -> float:
        """RFC 6026: wait for 2xx retransmissions in the INVITE client's Accepted state."""
        return 64 * self.t1


#: The RFC 3261 defaults.
DEFAULT_TIMERS = TimerConfig()
