"""The ``[plugins.load_balancer]`` section (OpenSIPS load_balancer module parameters)."""

from __future__ import annotations

from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from sipline_load_balancer.balancer import parse_flags
from sipline_load_balancer.destinations import (
    DestinationSpec,
    LoadBalancerError,
    parse_requested,
)


class DestinationEntry(BaseModel):
    """One ``[[plugins.load_balancer.destinations]]`` entry: the columns of the
    ``load_balancer`` table. ``id`` defaults to the entry's position (1, 2, ...)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: int | None = Field(default=None, ge=1)
    group_id: int = 0
    dst_uri: str
    #: ``"pstn=32;transc=8"``, or an inline table ``{pstn = 32, transc = 8}``.
    resources: str | dict[str, int]
    probe_mode: int = Field(default=0, ge=0, le=2)
    attrs: str | None = None
    description: str | None = None

    @model_validator(mode="after")
    def _valid(self) -> DestinationEntry:
        try:
            self.spec(self.id or 1)
        except LoadBalancerError as exc:
            raise ValueError(str(exc).partition(": ")[2] or str(exc)) from None
        return self

    def spec(self, default_id: int) -> DestinationSpec:
        return DestinationSpec.build(
            id=self.id if self.id is not None else default_id, group_id=self.group_id,
            dst_uri=self.dst_uri, resources=self.resources, probe_mode=self.probe_mode,
            attrs=self.attrs, description=self.description,
        )


_DEFAULT_FAILOVER: list[int | str] = ["5xx", 408]


class RouteInvites(BaseModel):
    """``route_invites``: the plugin's default behaviour, without a routing script."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    group: int
    resources: str
    flags: str = ""
    #: Final responses of a destination after which the call moves to the next one
    #: (lb_next): status codes (408) or classes ("5xx").
    failover_on: list[int | str] = Field(default_factory=lambda: _DEFAULT_FAILOVER.copy())

    @field_validator("resources", "flags")
    @classmethod
    def _parses(cls, value: str, info: ValidationInfo) -> str:
        parse = parse_requested if info.field_name == "resources" else parse_flags
        try:
            parse(value)
        except LoadBalancerError as exc:
            raise ValueError(str(exc)) from None
        return value

    @field_validator("failover_on")
    @classmethod
    def _codes(cls, value: list[int | str]) -> list[int | str]:
        for code in value:
            codes_of(code)
        return value

    def failover_statuses(self) -> frozenset[int]:
        out: set[int] = set()
        for code in self.failover_on:
            out |= codes_of(code)
        return frozenset(out)


def codes_of(code: int | str) -> set[int]:
    """``408`` -> {408}; ``"5xx"`` -> {500..599}. :raises ValueError: anything else."""
    text = str(code).strip().lower()
    if len(text) == 3 and text[0] in "3456" and text[1:] == "xx":
        base = int(text[0]) * 100
        return set(range(base, base + 100))
    if text.isdigit() and 300 <= int(text) <= 699:
        return {int(text)}
    raise ValueError(f"expected a final status 300..699 or a class like \"5xx\", got {code!r}")


def reply_codes(value: Any) -> frozenset[int]:
    """``"200;501;403"`` (or a list) -> the set of codes."""
    if isinstance(value, str):
        parts: list[Any] = [p for p in value.replace(",", ";").split(";") if p.strip()]
    else:
        parts = list(value)
    out = set()
    for part in parts:
        text = str(part).strip()
        if not text.isdigit() or not 100 <= int(text) <= 699:
            raise ValueError(f"expected SIP status codes like \"200;501;403\", got {part!r}")
        out.add(int(text))
    return frozenset(out)


class LoadBalancerConfig(BaseModel):
    """Settings of the load balancer."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: The destinations, for small setups. When given, the ``load_balancer`` table is
    #: not read (``lb_reload`` re-reads this file instead).
    destinations: list[DestinationEntry] | None = None
    #: Seconds between probing rounds (OpenSIPS ``probing_interval``); 0: no probing.
    probing_interval: float = Field(default=30.0, ge=0)
    #: The request sent as a probe (a non-INVITE method).
    probing_method: str = "OPTIONS"
    #: From URI of the probes (OpenSIPS ``probing_from``).
    probing_from: str = "sip:prober@localhost"
    #: Replies that prove a destination alive besides any 2xx (OpenSIPS
    #: ``probing_reply_codes``), e.g. "501;403".
    probing_reply_codes: str | list[int] = ""
    #: Seconds to wait for a probe's final response (no answer counts as a failure).
    probing_timeout: float = Field(default=5.0, gt=0)
    #: Failed probes in a row before a destination (probe_mode 2) is disabled.
    probing_failure_threshold: int = Field(default=1, ge=1)
    #: Successful probes in a row before a destination disabled by probing (or by
    #: ``lb_disable_dst``) is enabled again.
    probing_success_threshold: int = Field(default=1, ge=1)
    #: Probes in flight at most (the others wait for a free slot).
    probing_max_concurrent: int = Field(default=32, ge=1)
    #: The default behaviour: load-balance every initial INVITE for a local domain
    #: over this group (503 when no destination has capacity), failing over to the
    #: next destination on the ``failover_on`` responses.
    route_invites: RouteInvites | None = None

    @field_validator("probing_method")
    @classmethod
    def _method(cls, value: str) -> str:
        method = value.strip().upper()
        if not method.isalpha() or method in ("INVITE", "ACK", "CANCEL"):
            raise ValueError(f"probes are non-INVITE requests (OPTIONS...), not {value!r}")
        return method

    @field_validator("probing_reply_codes")
    @classmethod
    def _codes(cls, value: str | list[int]) -> str | list[int]:
        reply_codes(value)
        return value

    @field_validator("probing_from")
    @classmethod
    def _from(cls, value: str) -> str:
        from sipline.sip import SipParseError, parse_uri

        try:
            parse_uri(value)
        except SipParseError as exc:
            raise ValueError(f"not a SIP URI: {exc}") from None
        return value

    @model_validator(mode="after")
    def _unique_ids(self) -> LoadBalancerConfig:
        seen: set[int] = set()
        for spec in self.destination_specs() or ():
            if spec.id in seen:
                raise ValueError(f"destination id {spec.id} is used twice")
            seen.add(spec.id)
        return self

    def destination_specs(self) -> list[DestinationSpec] | None:
        """The TOML destinations (None: they come from the table)."""
        if self.destinations is None:
            return None
        return [entry.spec(i) for i, entry in enumerate(self.destinations, 1)]

    @property
    def alive_codes(self) -> frozenset[int]:
        return reply_codes(self.probing_reply_codes)
