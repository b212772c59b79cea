"""The ``[plugins.auth]`` section."""

from __future__ import annotations

import ipaddress
from typing import Literal, cast

from pydantic import BaseModel, ConfigDict, Field, field_validator

from sipline_auth.digest import DEFAULT_ALGORITHMS

Algorithm = Literal["SHA-256", "SHA-512-256", "MD5"]

#: RFC 3261 §22.1: an ACK or a CANCEL cannot be resubmitted, so it is never challenged.
NEVER_CHALLENGED = frozenset({"ACK", "CANCEL"})


class AuthConfig(BaseModel):
    """Settings of digest authentication (OpenSIPS auth/auth_db module parameters)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: The realm of every challenge. None: the request's domain (the To host of a
    #: REGISTER, the From host of anything else), as OpenSIPS does with an empty realm.
    realm: str | None = None
    #: Offered in this order, one challenge header each (RFC 8760 §2.4).
    algorithms: list[Algorithm] = Field(
        default_factory=lambda: cast("list[Algorithm]", list(DEFAULT_ALGORITHMS))
    )
    #: Quality of protection offered; "auth-int" also covers the body.
    qop: list[Literal["auth", "auth-int"]] = Field(default_factory=lambda: ["auth"])  # type: ignore[arg-type]
    #: HMAC key of the nonces. Give the same value to every node; unset, a random
    #: one is made when the plugin loads (shared by the workers of one `sipline run`,
    #: not by other nodes, and lost at restart).
    secret: str | None = Field(default=None, min_length=16)
    #: Seconds a nonce stays valid; an older one with the right password gets stale=true.
    nonce_expires: float = Field(default=300.0, gt=0)
    #: Nonces remembered for replay protection (per worker).
    nc_cache_size: int = Field(default=65536, ge=1)
    #: The authenticated user must be the From user (the To user for REGISTER).
    check_from: bool = True
    #: Source addresses or networks that are never challenged.
    trusted: list[str] = Field(default_factory=list)
    #: Methods challenged by the plugin's default route; None: all but ACK and CANCEL.
    methods: list[str] | None = None
    #: Without a routing script, challenge requests from local users. False: only
    #: the routing script authenticates (ctx.auth.check()).
    default_route: bool = True
    #: `sipline user add/passwd` also store the plaintext password (the ha1 columns
    #: are always written).
    store_password: bool = False
    #: Seconds between two full reloads of the subscriber table into memory; 0: never.
    reload_interval: float = Field(default=30.0, ge=0)
    #: Seconds during which one user is not looked up again in the database after a
    #: lookup (found or not): bounds the SQL an unknown-user flood can cause.
    lookup_interval: float = Field(default=5.0, ge=0)

    @field_validator("algorithms", "qop")
    @classmethod
    def _unique_non_empty(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("expected at least one value")
        if len(set(value)) != len(value):
            raise ValueError("a value is listed twice")
        return value

    @field_validator("trusted")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for item in value:
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError:
                raise ValueError(
                    f"expected an IP address or network such as '10.0.0.0/8', got {item!r}"
                ) from None
        return value

    @field_validator("methods")
    @classmethod
    def _methods(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        out = [m.strip().upper() for m in value]
        bad = sorted(NEVER_CHALLENGED.intersection(out))
        if bad:
            raise ValueError(
                f"{' and '.join(bad)} cannot be challenged (RFC 3261 §22.1); remove it"
            )
        if any(not m.isalpha() for m in out):
            raise ValueError(f"expected SIP method names, got {value!r}")
        return out
