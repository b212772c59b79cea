"""The load balancer's table and algorithm (pure: no I/O, testable without a server).

Selection (OpenSIPS ``lb_start``): among the enabled destinations of the group that
offer every requested resource, the one with the most free capacity wins. The free
capacity of a destination for a call is the smallest over the requested resources of
``capacity - load`` (absolute, the default) or ``(capacity - load) / capacity``
(relative, flag ``r``). A destination with no free capacity is not chosen unless the
flag ``n`` (negative availability) is given. Ties go to the lowest id.

A call's counts live in a :class:`Session`: the destination it holds, the resources it
asked for, the destinations already tried (``lb_next`` skips them).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from sipline_load_balancer.destinations import (
    BY_OPERATOR,
    BY_PROBING,
    BY_SCRIPT,
    PROBE_ALWAYS,
    PROBE_NEVER,
    Destination,
    DestinationSpec,
    LoadBalancerError,
    parse_requested,
)


class LbError(enum.Enum):
    """Why no destination was set; each maps to the reply a script usually sends.

    (The first item of each value tells them apart: members with equal values would
    be aliases of one another.)
    """

    #: No destination of the group offers every requested resource (or the group is
    #: unknown): a configuration problem.
    NO_DESTINATION = ("no destination", 500, "No Destination")
    #: Destinations exist, but every one of them is disabled (probing, lb_status...).
    DISABLED = ("all disabled", 503, "Service Unavailable")
    #: Enabled destinations exist, but none has a free slot for every resource.
    NO_CAPACITY = ("no capacity", 503, "Service Unavailable")
    #: lb_next: every destination able to take the call was tried already.
    EXHAUSTED = ("exhausted", 503, "Service Unavailable")
    #: lb_next / lb_reset without lb_start in this transaction.
    NOT_STARTED = ("not started", 500, "Load Balancing Not Started")

    def __init__(self, text: str, status: int, reason: str) -> None:
        self.text = text
        self.status = status
        self.reason = reason


class LbResult:
    """What ``ctx.lb.start()`` / ``ctx.lb.next()`` report: truthy when a destination was
    set (``destination``), falsy with ``error`` otherwise (``status`` and ``reason``
    are the reply to send: 500 no destination at all, 503 no capacity / all down)."""

    __slots__ = ("destination", "error", "ok")

    def __init__(self, ok: bool, error: LbError | None = None,
                 destination: Destination | None = None) -> None:
        self.ok = ok
        self.error = error
        self.destination = destination

    def __bool__(self) -> bool:
        return self.ok

    @property
    def status(self) -> int:
        return self.error.status if self.error is not None else 200

    @property
    def reason(self) -> str:
        return self.error.reason if self.error is not None else "OK"

    @property
    def uri(self) -> str | None:
        return self.destination.uri if self.destination is not None else None

    def __repr__(self) -> str:
        if self.ok:
            return f"LbResult(ok, destination={self.destination!r})"
        return f"LbResult(error={self.error})"


#: One immutable failure result per error: nothing to allocate on refusal.
FAILURES = {error: LbResult(False, error) for error in LbError}


def parse_flags(flags: str) -> tuple[bool, bool]:
    """``lb_start`` flags -> (relative, negative). :raises LoadBalancerError: unknown flag."""
    relative = negative = False
    for flag in flags or "":
        if flag == "r":
            relative = True
        elif flag == "n":
            negative = True
        elif not flag.isspace():
            raise LoadBalancerError(
                f"unknown load-balancing flag {flag!r} in {flags!r} "
                "(r: relative free capacity, n: allow destinations without free capacity)")
    return relative, negative


class Session:
    """One call's load balancing: where it is counted and what it asked for."""

    __slots__ = (
        "auto",
        "counted",
        "dialog",
        "dst",
        "group_id",
        "negative",
        "relative",
        "resources",
        "tried",
    )

    def __init__(self, group_id: int, resources: tuple[str, ...], relative: bool,
                 negative: bool, dialog: Any = None) -> None:
        self.group_id = group_id
        self.resources = resources
        self.relative = relative
        self.negative = negative
        self.dst: Destination | None = None
        self.tried: list[Destination] = []
        self.dialog = dialog
        self.counted = False
        #: Started by the plugin's own default route (route_invites): its failure hook
        #: moves the call on.
        self.auto = False

    def hold(self, dst: Destination) -> None:
        """Count the call on ``dst`` (after releasing whatever it held)."""
        self.release()
        dst.acquire(self.resources)
        self.dst = dst
        self.counted = True

    def release(self) -> None:
        """Stop counting the call (idempotent)."""
        if self.counted and self.dst is not None:
            self.dst.release(self.resources)
        self.counted = False


@dataclass
class ReloadReport:
    """What ``lb_reload`` changed."""

    kept: list[int] = field(default_factory=list)
    added: list[int] = field(default_factory=list)
    replaced: list[int] = field(default_factory=list)
    removed: list[int] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"kept": self.kept, "added": self.added, "replaced": self.replaced,
                "removed": self.removed, "errors": self.errors}


class Balancer:
    """Every destination of one worker, by id and by group, and the selection."""

    def __init__(self, specs: Iterable[DestinationSpec] = ()) -> None:
        self.by_id: dict[int, Destination] = {}
        self.groups: dict[int, tuple[Destination, ...]] = {}
        self.by_address: dict[tuple[str, int], tuple[Destination, ...]] = {}
        self._requested: dict[Any, tuple[str, ...]] = {}
        self._flags: dict[str, tuple[bool, bool]] = {"": (False, False)}
        self.load(specs)

    # ------------------------------------------------------------------ data
    def __iter__(self) -> Iterator[Destination]:
        return iter(list(self.by_id.values()))

    def __len__(self) -> int:
        return len(self.by_id)

    def get(self, dst_id: int) -> Destination | None:
        return self.by_id.get(dst_id)

    def load(self, specs: Iterable[DestinationSpec]) -> ReloadReport:
        """Replace the destinations with ``specs`` (``lb_reload``).

        A destination whose id, group and URI are unchanged keeps its object, so its
        load and state carry on (its capacities and settings are updated). Any other
        is new; calls counted on a replaced or removed destination are released on the
        old object when they end, and do not count against the new one.
        """
        report = ReloadReport()
        specs = list(specs)
        seen: set[int] = set()
        for spec in specs:
            if spec.id in seen:
                raise LoadBalancerError(f"destination id {spec.id} is used twice")
            seen.add(spec.id)
        old = self.by_id
        by_id: dict[int, Destination] = {}
        for spec in sorted(specs, key=lambda s: s.id):
            current = old.get(spec.id)
            if current is not None and current.same_place(spec):
                current.update(spec)
                by_id[spec.id] = current
                report.kept.append(spec.id)
            else:
                by_id[spec.id] = Destination(spec)
                (report.replaced if current is not None else report.added).append(spec.id)
        report.removed = sorted(set(old) - set(by_id))
        groups: dict[int, list[Destination]] = {}
        addresses: dict[tuple[str, int], list[Destination]] = {}
        for dst in by_id.values():
            groups.setdefault(dst.group_id, []).append(dst)
            addresses.setdefault((dst.host, dst.port), []).append(dst)
        self.by_id = by_id
        self.groups = {g: tuple(d) for g, d in groups.items()}
        self.by_address = {a: tuple(d) for a, d in addresses.items()}
        return report

    # ------------------------------------------------------------------ arguments
    def requested(self, resources: Any) -> tuple[str, ...]:
        """Parsed resource list, cached (scripts pass the same few strings every call)."""
        found = self._requested.get(resources)
        if found is None:
            found = parse_requested(resources)
            if isinstance(resources, str) and len(self._requested) < 1024:
                self._requested[resources] = found
        return found

    def flags(self, flags: str) -> tuple[bool, bool]:
        found = self._flags.get(flags)
        if found is None:
            found = parse_flags(flags)
            if len(self._flags) < 64:
                self._flags[flags] = found
        return found

    # ------------------------------------------------------------------ selection
    def select(
        self,
        group_id: int,
        resources: tuple[str, ...],
        relative: bool = False,
        negative: bool = False,
        exclude: list[Destination] | None = None,
    ) -> tuple[Destination | None, LbError | None]:
        """The destination with the most free capacity, or why there is none."""
        best: Destination | None = None
        best_free = 0.0
        offered = disabled = False
        single = resources[0] if len(resources) == 1 else None
        for dst in self.groups.get(group_id, ()):
            caps = dst.caps
            if single is not None:
                if single not in caps:
                    continue
            elif not dst.offers(resources):
                continue
            offered = True
            if exclude and dst in exclude:
                continue
            if dst.disabled is not None:
                disabled = True
                continue
            if single is not None and not relative:
                free: float = caps[single] - dst.load[single]
            else:
                free = dst.availability(resources, relative)
            if best is None or free > best_free:
                best, best_free = dst, free
        if best is None:
            if not offered:
                return None, LbError.NO_DESTINATION
            return None, LbError.DISABLED if disabled else LbError.EXHAUSTED
        if best_free <= 0 and not negative:
            return None, LbError.NO_CAPACITY
        return best, None

    def find(self, host: str, port: int, group_id: int | None = None,
             active: bool = False) -> Destination | None:
        """The destination at ``host:port`` (OpenSIPS ``lb_is_destination``)."""
        host = host.lower()
        if host.startswith("["):
            host = host[1:-1]
        for dst in self.by_address.get((host, port), ()):
            if group_id is not None and dst.group_id != group_id:
                continue
            if active and dst.disabled is not None:
                continue
            return dst
        return None

    # ------------------------------------------------------------------ state
    @staticmethod
    def set_status(dst: Destination, enabled: bool) -> None:
        """Operator's decision (``lb_status``): off stays off until switched on again."""
        dst.disabled = None if enabled else BY_OPERATOR
        dst.probe_failures = dst.probe_successes = 0

    @staticmethod
    def disable_by_script(dst: Destination) -> bool:
        """``lb_disable_dst``: off until a probe answers (a destination that is not probed
        stays off until ``lb_status`` switches it on)."""
        if dst.disabled is not None:
            return False
        dst.disabled = BY_SCRIPT
        dst.probe_failures = dst.probe_successes = 0
        return True

    @staticmethod
    def needs_probe(dst: Destination) -> bool:
        """Whether probing should ask ``dst`` now (its probe_mode and its state)."""
        if dst.probe_mode == PROBE_NEVER or dst.disabled == BY_OPERATOR:
            return False
        return dst.probe_mode == PROBE_ALWAYS or dst.disabled is not None

    @staticmethod
    def probed(dst: Destination, alive: bool, status: int | None, *,
               failures_to_disable: int, successes_to_enable: int) -> str | None:
        """Apply one probe's outcome; returns "disabled" / "enabled" on a change."""
        dst.last_probe = status
        if alive:
            dst.probe_failures = 0
            dst.probe_successes += 1
            if dst.disabled in (BY_PROBING, BY_SCRIPT) and \
                    dst.probe_successes >= successes_to_enable:
                dst.disabled = None
                return "enabled"
            return None
        dst.probe_successes = 0
        dst.probe_failures += 1
        if dst.disabled is None and dst.probe_mode == PROBE_ALWAYS and \
                dst.probe_failures >= failures_to_disable:
            dst.disabled = BY_PROBING
            return "disabled"
        return None
