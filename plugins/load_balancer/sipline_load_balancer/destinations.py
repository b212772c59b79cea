"""Destinations, their resources and their state (pure: no I/O, no SIP stack).

A destination is one row of the ``load_balancer`` table (or one TOML entry): a SIP URI
in a group, offering resources with a capacity each (``pstn=32;transc=8``). Its load is
the number of calls counted against each resource; its state says whether it may be
chosen (probing or an operator may disable it).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from sipline.sip import SipParseError, parse_uri

_NAME = re.compile(r"^[A-Za-z0-9_.+-]+$")

#: ``probe_mode`` values (OpenSIPS): never probe, probe only while disabled, always probe.
PROBE_NEVER, PROBE_WHEN_DISABLED, PROBE_ALWAYS = 0, 1, 2

#: Why a destination is disabled (``None``: it is enabled).
BY_PROBING = "probing"  # failed probes; probing enables it again
BY_SCRIPT = "lb_disable_dst"  # the routing script; probing (if any) enables it again
BY_OPERATOR = "lb_status"  # MI lb_status 0; only lb_status 1 enables it again


class LoadBalancerError(ValueError):
    """Bad load-balancing data or arguments; the message says what to fix."""


def parse_resources(text: str | Mapping[str, Any]) -> dict[str, int]:
    """Resources and capacities: ``"pstn=32;transc=8"`` (or a mapping) -> ``{"pstn": 32, ...}``.

    :raises LoadBalancerError: for a malformed list, a duplicate or a bad capacity.
    """
    if isinstance(text, Mapping):
        items = [(str(k), v) for k, v in text.items()]
    else:
        items = []
        for part in str(text).split(";"):
            part = part.strip()
            if not part:
                continue
            name, sep, value = part.partition("=")
            if not sep:
                raise LoadBalancerError(
                    f"resource {part!r} has no capacity: write name=capacity (pstn=32)")
            items.append((name.strip(), value.strip()))
    out: dict[str, int] = {}
    for name, value in items:
        if not _NAME.match(name):
            raise LoadBalancerError(f"invalid resource name {name!r}")
        if name in out:
            raise LoadBalancerError(f"resource {name!r} is listed twice")
        if isinstance(value, bool):
            raise LoadBalancerError(f"resource {name!r}: capacity must be a whole number")
        try:
            capacity = int(value)
        except (TypeError, ValueError):
            raise LoadBalancerError(
                f"resource {name!r}: capacity must be a whole number, got {value!r} "
                "(capacities fetched from FreeSWITCH are not supported)") from None
        if capacity < 0:
            raise LoadBalancerError(f"resource {name!r}: capacity must not be negative")
        out[name] = capacity
    if not out:
        raise LoadBalancerError("no resource given (write name=capacity;..., e.g. pstn=32)")
    return out


def parse_requested(text: str | Iterable[str]) -> tuple[str, ...]:
    """The resources a call asks for: ``"pstn;transc"`` -> ``("pstn", "transc")``."""
    parts = text.split(";") if isinstance(text, str) else list(text)
    out: list[str] = []
    for part in parts:
        name = str(part).strip()
        if not name:
            continue
        if not _NAME.match(name):
            raise LoadBalancerError(f"invalid resource name {name!r}")
        if name not in out:
            out.append(name)
    if not out:
        raise LoadBalancerError("no resource requested (e.g. \"pstn\" or \"pstn;transc\")")
    return tuple(out)


def format_resources(resources: Mapping[str, int]) -> str:
    return ";".join(f"{name}={cap}" for name, cap in resources.items())


@dataclass(frozen=True)
class DestinationSpec:
    """A destination as configured (a table row or a TOML entry), validated."""

    id: int
    group_id: int
    dst_uri: str
    resources: tuple[tuple[str, int], ...]
    probe_mode: int = PROBE_NEVER
    attrs: str | None = None
    description: str | None = None

    @classmethod
    def build(cls, *, id: Any, group_id: Any, dst_uri: Any, resources: Any,
              probe_mode: Any = 0, attrs: Any = None, description: Any = None) -> DestinationSpec:
        """Validate one destination. :raises LoadBalancerError: naming what is wrong."""
        try:
            ident = _whole(id, "id")
            if ident < 1:
                raise LoadBalancerError(f"id must be >= 1, got {ident}")
            group = _whole(group_id, "group_id")
            mode = _whole(probe_mode, "probe_mode")
            if mode not in (PROBE_NEVER, PROBE_WHEN_DISABLED, PROBE_ALWAYS):
                raise LoadBalancerError(
                    f"probe_mode must be 0 (never), 1 (when disabled) or 2 (always), got {mode}")
            uri = str(dst_uri or "").strip()
            try:
                parsed = parse_uri(uri)
            except SipParseError as exc:
                raise LoadBalancerError(f"dst_uri {uri!r} is not a SIP URI: {exc}") from None
            if getattr(parsed, "scheme", None) not in ("sip", "sips") or not getattr(
                    parsed, "host", None):
                raise LoadBalancerError(f"dst_uri {uri!r} must be a sip: or sips: URI")
            caps = parse_resources(resources if resources is not None else "")
        except LoadBalancerError as exc:
            where = f"destination {id!r}" if id is not None else "destination"
            raise LoadBalancerError(f"{where}: {exc}") from None
        return cls(ident, group, uri, tuple(caps.items()), mode,
                   None if attrs is None else str(attrs),
                   None if description is None else str(description))


def _whole(value: Any, what: str) -> int:
    if isinstance(value, bool) or value is None:
        raise LoadBalancerError(f"{what} must be a whole number, got {value!r}")
    try:
        return int(value)
    except (TypeError, ValueError):
        raise LoadBalancerError(f"{what} must be a whole number, got {value!r}") from None


class Destination:
    """A destination in memory: capacities, current load, state.

    ``load[r]`` counts the calls holding resource ``r``; ``calls`` the calls on the
    destination (whatever resources they hold). The object is kept across ``lb_reload``
    while its id, group and URI stay the same, so the calls counted on it stay counted.
    """

    __slots__ = (
        "attrs",
        "calls",
        "caps",
        "description",
        "disabled",
        "group_id",
        "host",
        "id",
        "last_probe",
        "load",
        "port",
        "probe_failures",
        "probe_mode",
        "probe_successes",
        "probing",
        "started",
        "uri",
    )

    def __init__(self, spec: DestinationSpec) -> None:
        self.id = spec.id
        self.group_id = spec.group_id
        self.uri = spec.dst_uri
        uri = parse_uri(spec.dst_uri)
        host = str(getattr(uri, "host", "")).lower()
        self.host = host[1:-1] if host.startswith("[") else host
        self.port = getattr(uri, "port", None) or (5061 if uri.scheme == "sips" else 5060)
        self.caps: dict[str, int] = {}
        self.load: dict[str, int] = {}
        self.probe_mode = PROBE_NEVER
        self.attrs: str | None = None
        self.description: str | None = None
        #: None when enabled, else why (BY_PROBING, BY_SCRIPT, BY_OPERATOR).
        self.disabled: str | None = None
        self.probe_failures = 0
        self.probe_successes = 0
        #: Status of the last probe's answer (None: never probed; 408: no answer).
        self.last_probe: int | None = None
        self.probing = False
        self.calls = 0
        #: Calls started on this destination (lb_start, lb_next, lb_count_call).
        self.started = 0
        self.update(spec)

    def update(self, spec: DestinationSpec) -> None:
        """Take the capacities and settings of ``spec`` (same id, group and URI)."""
        self.caps = dict(spec.resources)
        load = self.load
        self.load = {name: load.get(name, 0) for name in self.caps}
        self.probe_mode = spec.probe_mode
        self.attrs = spec.attrs
        self.description = spec.description
        if spec.probe_mode == PROBE_NEVER and self.disabled == BY_PROBING:
            self.disabled = None  # no probe would ever enable it again

    def same_place(self, spec: DestinationSpec) -> bool:
        """True when ``spec`` describes this destination (id, group and URI unchanged)."""
        return spec.id == self.id and spec.group_id == self.group_id and spec.dst_uri == self.uri

    @property
    def enabled(self) -> bool:
        return self.disabled is None

    def offers(self, resources: tuple[str, ...]) -> bool:
        caps = self.caps
        return all(r in caps for r in resources)

    def availability(self, resources: tuple[str, ...], relative: bool) -> float:
        """Free capacity for a call needing ``resources``: the smallest over them, in
        slots (absolute) or as a fraction of the capacity (relative)."""
        caps, load = self.caps, self.load
        best: float | None = None
        for r in resources:
            cap = caps[r]
            free: float = cap - load[r]
            if relative:
                free = free / cap if cap else float(-load[r] - 1)
            if best is None or free < best:
                best = free
        assert best is not None
        return best

    def acquire(self, resources: tuple[str, ...]) -> None:
        load = self.load
        for r in resources:
            if r in load:
                load[r] += 1
        self.calls += 1
        self.started += 1

    def release(self, resources: tuple[str, ...]) -> None:
        load = self.load
        for r in resources:
            if load.get(r, 0) > 0:
                load[r] -= 1
        if self.calls > 0:
            self.calls -= 1

    def info(self) -> dict[str, Any]:
        """The destination as ``lb_list`` shows it (OpenSIPS field names where it has some)."""
        return {
            "id": self.id,
            "group": self.group_id,
            "uri": self.uri,
            "enabled": self.enabled,
            "state": "enabled" if self.disabled is None else f"disabled ({self.disabled})",
            "auto-re": self.probe_mode != PROBE_NEVER and self.disabled != BY_OPERATOR,
            "probe_mode": self.probe_mode,
            "last_probe": self.last_probe,
            "calls": self.calls,
            "Resources": [
                {"name": name, "max": cap, "load": self.load.get(name, 0)}
                for name, cap in self.caps.items()
            ],
            "attrs": self.attrs,
            "description": self.description,
        }

    def __repr__(self) -> str:
        return (f"<Destination {self.id} group {self.group_id} {self.uri} "
                f"{format_resources(self.caps)} {'up' if self.enabled else 'down'}>")
