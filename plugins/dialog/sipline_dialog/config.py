"""The ``[plugins.dialog]`` section (OpenSIPS dialog module parameters)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class DialogConfig(BaseModel):
    """Settings of the dialog plugin."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: Create a dialog for every initial INVITE that reaches the plugin in the pipeline
    #: (without a routing script: every initial INVITE). A script calls
    #: ``ctx.dialog.create()`` for the INVITEs it relays itself.
    auto_create: bool = False
    #: Lifetime of a confirmed dialog in seconds (OpenSIPS ``default_timeout``: 12 h),
    #: restarted by every re-INVITE and UPDATE. A script may set another per dialog.
    default_timeout: int = Field(default=43200, ge=1)
    #: On expiry, send BYE to both sides (OpenSIPS's ``B`` dialog flag, for every dialog).
    bye_on_timeout: bool = False
    #: Bound on a dialog that is never confirmed and whose INVITE never got a final
    #: response the plugin could see (seconds from creation).
    unconfirmed_timeout: float = Field(default=300.0, gt=0)
    #: A dialog whose INVITE was not relayed within this many seconds (the script
    #: answered it, or the relay failed before any transaction existed) is failed.
    unrouted_timeout: float = Field(default=10.0, gt=0)
    #: Profiles without and with values (OpenSIPS ``profiles_no_value`` /
    #: ``profiles_with_value``). Other plugins may define more at startup.
    profiles_no_value: list[str] = Field(default_factory=list)
    profiles_with_value: list[str] = Field(default_factory=list)
    #: Where dialogs live: "memory" only; "write-through" (every change of a confirmed
    #: dialog queued at once to a writer thread); "write-back" (changes written every
    #: ``write_back_interval`` seconds and at shutdown). The SQL modes reload the
    #: confirmed dialogs at startup, so calls survive a restart.
    db_mode: Literal["memory", "write-through", "write-back"] = "memory"
    write_back_interval: float = Field(default=10.0, gt=0)

    @model_validator(mode="after")
    def _profiles(self) -> DialogConfig:
        both = set(self.profiles_no_value) & set(self.profiles_with_value)
        if both:
            raise ValueError(
                f"profile {min(both)!r} is listed in both profiles_no_value and "
                "profiles_with_value"
            )
        for name in (*self.profiles_no_value, *self.profiles_with_value):
            if not name or name.strip() != name:
                raise ValueError(f"invalid profile name {name!r}")
        return self
