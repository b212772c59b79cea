"""One dialog: what the proxy knows of a call it record-routed (RFC 3261 §12).

Pure data plus small methods; the state transitions happen in
:class:`sipline_dialog.table.DialogTable`, which owns the indexes, the profiles and
the callbacks. A :class:`Dialog` is what other plugins and routing scripts hold.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sipline_dialog.table import DialogTable


class DialogState(enum.IntEnum):
    """Dialog states, numbered as OpenSIPS numbers them in ``dlg_list``.

    OpenSIPS's 3 (confirmed, not yet ACKed) is not distinguished: a 2xx confirms.
    """

    UNCONFIRMED = 1  # the INVITE went out, no response with a To tag yet
    EARLY = 2  # a provisional response with a To tag came back
    CONFIRMED = 4  # a 2xx came back
    DELETED = 5  # ended: BYE, failure, expiry, or ended by hand


#: Event names of the callbacks (see :meth:`DialogTable.subscribe`, :meth:`Dialog.on`).
CREATED = "created"
EARLY = "early"
CONFIRMED = "confirmed"
TERMINATED = "terminated"  # a BYE (from either side), dlg_end_dlg, or an API call
EXPIRED = "expired"  # the lifetime ran out
FAILED = "failed"  # never confirmed: a final >= 300, a CANCEL, no answer, not relayed
ENDED = "ended"  # after each of terminated, expired and failed: exactly once per dialog
EVENTS = frozenset({CREATED, EARLY, CONFIRMED, TERMINATED, EXPIRED, FAILED, ENDED})

#: ``flags`` bit: send BYE to both sides when the dialog expires.
FLAG_BYE_ON_TIMEOUT = 1

Callback = Callable[["Dialog", str], Any]


class DialogVars(dict):  # type: ignore[type-arg]
    """``dlg.vars``: a dict whose changes reach the dialog's storage (OpenSIPS ``$dlg_val``).

    Values should be JSON types (str, int, float, bool, None, lists and dicts of them)
    when dialogs are persisted; anything else is stored as its ``str()``.
    """

    __slots__ = ("_dlg",)

    def __init__(self, dlg: Dialog, *args: Any) -> None:
        super().__init__(*args)
        self._dlg = dlg

    def __setitem__(self, key: str, value: Any) -> None:
        super().__setitem__(key, value)
        self._dlg.touch()

    def __delitem__(self, key: str) -> None:
        super().__delitem__(key)
        self._dlg.touch()

    def pop(self, *args: Any) -> Any:
        result = super().pop(*args)
        self._dlg.touch()
        return result

    def setdefault(self, key: str, default: Any = None) -> Any:
        if key not in self:
            self[key] = default
        return self[key]

    def update(self, *args: Any, **kwargs: Any) -> None:
        super().update(*args, **kwargs)
        self._dlg.touch()

    def clear(self) -> None:
        super().clear()
        self._dlg.touch()


class Dialog:
    """A call the proxy tracks, from its initial INVITE to its end.

    Caller side: the INVITE's sender (``from_*``, ``caller_*``); callee side: the
    UAS that answered (``to_*``, ``callee_*``). Route sets are the Record-Route
    entries between us and each side, in the order a request from us follows them.
    Times (``created``, ``start_time``, ``expires``) are on the table's clock.
    """

    __slots__ = (
        "__weakref__",
        "callbacks",
        "callee_contact",
        "callee_cseq",
        "callee_route_set",
        "callee_sock",
        "caller_contact",
        "caller_cseq",
        "caller_route_set",
        "caller_sock",
        "callid",
        "created",
        "early_tag",
        "end_event",
        "expires",
        "flags",
        "from_tag",
        "from_uri",
        "id",
        "invite_ctx",
        "lifetime",
        "profiles",
        "relayed",
        "start_time",
        "state",
        "stored",
        "table",
        "to_tag",
        "to_uri",
        "vars",
    )

    def __init__(
        self,
        table: DialogTable,
        dlg_id: str,
        *,
        callid: str,
        from_uri: str,
        from_tag: str,
        to_uri: str,
        caller_cseq: int,
        caller_contact: str,
        caller_sock: str = "",
        lifetime: int,
        flags: int = 0,
        created: float,
    ) -> None:
        self.table = table
        self.id = dlg_id
        self.callid = callid
        self.from_uri = from_uri
        self.from_tag = from_tag
        self.to_uri = to_uri
        self.to_tag: str | None = None
        #: To tag of the last provisional response (with forking, one of several).
        self.early_tag: str | None = None
        self.caller_cseq = caller_cseq
        self.callee_cseq = 0
        self.caller_contact = caller_contact
        self.callee_contact = ""
        self.caller_route_set: tuple[str, ...] = ()
        self.callee_route_set: tuple[str, ...] = ()
        self.caller_sock = caller_sock
        self.callee_sock = ""
        self.state = DialogState.UNCONFIRMED
        self.created = created
        self.start_time: float | None = None
        self.expires: float | None = None
        self.lifetime = lifetime
        self.flags = flags
        self.vars: DialogVars = DialogVars(self)
        #: (profile, value) pairs this dialog counts in; kept after the end, for callbacks.
        self.profiles: set[tuple[str, str | None]] = set()
        self.end_event: str | None = None
        self.callbacks: dict[str, list[Callback]] | None = None
        #: The initial INVITE's request context while the dialog is not confirmed: its
        #: response context tells whether the transaction ended without a 2xx.
        self.invite_ctx: Any = None
        self.relayed = False
        self.stored = False

    # -- state ---------------------------------------------------------------------------
    @property
    def confirmed(self) -> bool:
        return self.state is DialogState.CONFIRMED

    @property
    def ended(self) -> bool:
        return self.state is DialogState.DELETED

    @property
    def bye_on_timeout(self) -> bool:
        return bool(self.flags & FLAG_BYE_ON_TIMEOUT)

    @bye_on_timeout.setter
    def bye_on_timeout(self, on: bool) -> None:
        self.flags = self.flags | FLAG_BYE_ON_TIMEOUT if on else self.flags & ~FLAG_BYE_ON_TIMEOUT
        self.touch()

    def touch(self) -> None:
        """Tell the storage this dialog changed (a no-op when dialogs are not persisted)."""
        if self.state is DialogState.CONFIRMED:
            self.table.changed(self)

    # -- API for scripts and plugins -----------------------------------------------------
    def set_timeout(self, seconds: int) -> None:
        """Set the lifetime (OpenSIPS ``$DLG_timeout``); a confirmed dialog expires
        ``seconds`` from now, an unconfirmed one that long after its 2xx."""
        self.table.set_timeout(self, seconds)

    def set_profile(self, name: str, value: str | None = None) -> None:
        """Count this dialog in profile ``name`` (with ``value`` for a profile with values)
        until it ends (OpenSIPS ``set_dlg_profile``). Setting it twice counts once."""
        self.table.set_profile(self, name, value)

    def unset_profile(self, name: str, value: str | None = None) -> bool:
        """Remove this dialog from a profile (OpenSIPS ``unset_dlg_profile``); False if it
        was not in it. Without ``value`` on a profile with values: every value."""
        return self.table.unset_profile(self, name, value)

    def in_profile(self, name: str, value: str | None = None) -> bool:
        """OpenSIPS ``is_in_profile``: without ``value``, with any value."""
        self.table.profiles.get(name, value)  # raises for an unknown profile
        if value is None:
            return any(p == name for p, _ in self.profiles)
        return (name, value) in self.profiles

    def on(self, event: str, callback: Callback) -> None:
        """Call ``callback(dlg, event)`` when this dialog reaches ``event``.

        Per-dialog callbacks live in memory only: they are not restored with a
        dialog reloaded from the database (use profiles, or a global subscription).
        """
        if event not in EVENTS:
            raise ValueError(f"unknown dialog event {event!r} (one of {', '.join(sorted(EVENTS))})")
        if self.callbacks is None:
            self.callbacks = {}
        self.callbacks.setdefault(event, []).append(callback)

    def info(self, wall_offset: float = 0.0) -> dict[str, Any]:
        """The dialog as MI shows it (OpenSIPS ``dlg_list`` field names; Unix times)."""
        return {
            "ID": self.id,
            "state": int(self.state),
            "callid": self.callid,
            "from_uri": self.from_uri,
            "from_tag": self.from_tag,
            "to_uri": self.to_uri,
            "to_tag": self.to_tag or self.early_tag or "",
            "caller_contact": self.caller_contact,
            "callee_contact": self.callee_contact,
            "caller_cseq": self.caller_cseq,
            "callee_cseq": self.callee_cseq,
            "caller_route_set": list(self.caller_route_set),
            "callee_route_set": list(self.callee_route_set),
            "caller_sock": self.caller_sock,
            "callee_sock": self.callee_sock,
            "start_time": round(self.start_time + wall_offset) if self.start_time else 0,
            "timeout": round(self.expires + wall_offset) if self.expires is not None else 0,
            "lifetime": self.lifetime,
            "flags": self.flags,
            "vars": dict(self.vars),
            "profiles": [
                {"name": name, "value": value} for name, value in sorted(
                    self.profiles, key=lambda p: (p[0], p[1] or ""))
            ],
        }

    def __repr__(self) -> str:
        return f"<Dialog {self.id} {self.state.name.lower()} {self.callid}>"
