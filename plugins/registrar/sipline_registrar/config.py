"""The ``[plugins.registrar]`` section."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class RegistrarConfig(BaseModel):
    """Settings of the registrar (OpenSIPS registrar module parameters)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    default_expires: int = Field(default=3600, ge=1)
    min_expires: int = Field(default=60, ge=0)
    max_expires: int = Field(default=86400, ge=1)
    max_contacts: int = Field(default=0, ge=0)
    max_contacts_policy: Literal["reject", "evict"] = "reject"
    redirect: bool = False
    #: Reach a binding at the address its REGISTER came from when that differs from
    #: the Contact (a phone behind NAT), like OpenSIPS's received_avp with
    #: fix_nated_register(). Off: the Contact is used as registered.
    nat_received: bool = False
    #: Where bindings live (OpenSIPS usrloc ``db_mode``): "memory" only; "write-through"
    #: (memory, every change written to the ``location`` table at once by a background
    #: thread); "write-back" (memory, changes written every ``write_back_interval``
    #: seconds and at shutdown); "sql-only" (the table is the store: shared by workers
    #: and nodes). Every mode but "memory" reloads the bindings at startup.
    db_mode: Literal["memory", "write-through", "write-back", "sql-only"] = "memory"
    write_back_interval: float = Field(default=10.0, gt=0)

    @model_validator(mode="after")
    def _ordered(self) -> RegistrarConfig:
        if self.min_expires > self.max_expires:
            raise ValueError("min_expires must not exceed max_expires")
        return self
