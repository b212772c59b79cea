"""The dialog table: every live dialog of one worker, its state machine, profiles,
lifetimes and callbacks. No sockets and no SIP parsing here: the plugin feeds it
what it saw, so the state machine is testable with an injected clock.

States (RFC 3261 §12, OpenSIPS dialog)::

    create ──> UNCONFIRMED ──1xx with To tag──> EARLY
                    │   └───────────2xx─────────────┐   │ 2xx
                    │ final >= 300, CANCEL,          v   v
                    │ no answer, not relayed      CONFIRMED ── BYE / end() ──> DELETED (terminated)
                    └──────────> DELETED (failed)     └──── lifetime over ───> DELETED (expired)

Per-message work is dict lookups: dialogs by id (the ``did`` Record-Route cookie) and
by Call-ID (the RFC 3261 fallback), profiles as sets with a running size, and a heap
of expiry times looked at once per timer tick.
"""

from __future__ import annotations

import heapq
import inspect
import itertools
import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Protocol

from sipline_dialog.config import DialogConfig
from sipline_dialog.dialog import (
    CONFIRMED,
    CREATED,
    EARLY,
    ENDED,
    EVENTS,
    EXPIRED,
    FAILED,
    FLAG_BYE_ON_TIMEOUT,
    TERMINATED,
    Callback,
    Dialog,
    DialogState,
)
from sipline_dialog.profiles import ProfileError, Profiles

log = logging.getLogger("sipline.plugin.dialog")

Clock = Callable[[], float]

#: In-dialog requests that carry no CSeq of their own direction worth keeping.
_NO_CSEQ = frozenset({"ACK", "CANCEL"})
#: Requests (and their 2xx) that refresh the lifetime and the remote target.
_REFRESHING = frozenset({"INVITE", "UPDATE"})


class DialogError(Exception):
    """A dialog operation that cannot be done; the message says why."""


class Store(Protocol):
    """Where the table reports changes of confirmed dialogs (see ``storage.py``)."""

    def changed(self, dlg: Dialog) -> None: ...

    def removed(self, dlg: Dialog) -> None: ...


class DialogTable:
    """The dialogs of one worker."""

    def __init__(
        self,
        config: DialogConfig | None = None,
        clock: Clock = time.monotonic,
        *,
        spawn: Callable[[Any], Any] | None = None,
    ) -> None:
        self.config = config or DialogConfig()
        self.clock = clock
        #: Runs the awaitable a callback returned (``server.spawn``).
        self.spawn = spawn
        self.store: Store | None = None
        self.dialogs: dict[str, Dialog] = {}
        self.by_callid: dict[str, list[Dialog]] = {}
        #: Dialogs not confirmed yet (unconfirmed and early), looked at every tick.
        self.pending: dict[str, Dialog] = {}
        self._expiry: list[tuple[float, int, Dialog]] = []
        self._seq = itertools.count()
        self.profiles = Profiles()
        for name in self.config.profiles_no_value:
            self.profiles.define(name, with_value=False)
        for name in self.config.profiles_with_value:
            self.profiles.define(name, with_value=True)
        self.subscribers: dict[str, list[Callback]] = {}
        self._prefix = os.urandom(4).hex()
        self._ids = itertools.count(1)
        # statistics
        self.processed = 0
        self.expired = 0
        self.failed = 0
        self.terminated = 0
        self.early = 0
        self.active = 0

    # ------------------------------------------------------------------ lookups
    def __len__(self) -> int:
        return len(self.dialogs)

    def __iter__(self) -> Iterator[Dialog]:
        return iter(list(self.dialogs.values()))

    def get(self, dlg_id: str) -> Dialog | None:
        return self.dialogs.get(dlg_id)

    def match(
        self, callid: str, from_tag: str | None, to_tag: str | None, did: str | None = None
    ) -> tuple[Dialog, bool] | None:
        """The dialog an in-dialog request belongs to, and whether the caller sent it.

        By the ``did`` cookie first (checked against Call-ID and tags: a forked
        sibling dialog that got the same cookie does not match), then by Call-ID and
        tags (RFC 3261 §12.2.2).
        """
        if did is not None:
            dlg = self.dialogs.get(did)
            if dlg is not None and dlg.callid == callid:
                direction = _direction(dlg, from_tag, to_tag)
                if direction is not None:
                    return dlg, direction
        candidates = self.by_callid.get(callid)
        if candidates:
            for dlg in candidates:
                direction = _direction(dlg, from_tag, to_tag)
                if direction is not None:
                    return dlg, direction
        return None

    # ------------------------------------------------------------------ creation
    def new_id(self) -> str:
        """A dialog id unique in this process and across restarts (a random prefix)."""
        return f"{self._prefix}.{next(self._ids):x}"

    def create(
        self,
        *,
        callid: str,
        from_uri: str,
        from_tag: str,
        to_uri: str,
        cseq: int,
        contact: str,
        sock: str = "",
        lifetime: int | None = None,
    ) -> Dialog:
        """A new unconfirmed dialog for an initial INVITE (fires ``created``)."""
        flags = FLAG_BYE_ON_TIMEOUT if self.config.bye_on_timeout else 0
        dlg = Dialog(
            self, self.new_id(), callid=callid, from_uri=from_uri, from_tag=from_tag,
            to_uri=to_uri, caller_cseq=cseq, caller_contact=contact, caller_sock=sock,
            lifetime=lifetime or self.config.default_timeout, flags=flags, created=self.clock(),
        )
        self._index(dlg)
        self.pending[dlg.id] = dlg
        self.processed += 1
        self._fire(dlg, CREATED)
        return dlg

    def restore(self, dlg: Dialog, profiles: Iterable[tuple[str, str | None]] = ()) -> None:
        """Add a confirmed dialog loaded from storage (no ``created`` event).

        Profiles it was in are defined on the fly when unknown (a plugin defining
        them at its own startup finds them already there, with the same kind).
        """
        dlg.state = DialogState.CONFIRMED
        dlg.stored = True
        self._index(dlg)
        self.active += 1
        for name, value in profiles:
            try:
                profile = self.profiles.define(name, with_value=value is not None)
            except ProfileError as exc:
                log.warning("dialog %s: profile membership not restored: %s", dlg.id, exc)
                continue
            if profile.add(value, dlg):
                dlg.profiles.add((name, value))
        if dlg.expires is not None:
            self._schedule(dlg)

    def _index(self, dlg: Dialog) -> None:
        if dlg.id in self.dialogs:
            raise DialogError(f"dialog id {dlg.id!r} exists already")
        self.dialogs[dlg.id] = dlg
        self.by_callid.setdefault(dlg.callid, []).append(dlg)

    # ------------------------------------------------------------------ transitions
    def provisional(self, dlg: Dialog, to_tag: str | None) -> None:
        """A 1xx (not 100) for the initial INVITE: with a To tag the dialog is early."""
        if dlg.state is DialogState.UNCONFIRMED and to_tag:
            dlg.state = DialogState.EARLY
            dlg.early_tag = to_tag
            self.early += 1
            self._fire(dlg, EARLY)
        elif dlg.state is DialogState.EARLY and to_tag:
            dlg.early_tag = to_tag

    def confirm(
        self,
        dlg: Dialog,
        *,
        to_tag: str,
        contact: str,
        caller_route_set: tuple[str, ...] = (),
        callee_route_set: tuple[str, ...] = (),
        sock: str = "",
    ) -> bool:
        """A 2xx for the initial INVITE; False when it is not the first (a forked 2xx)."""
        state = dlg.state
        if state is DialogState.CONFIRMED or state is DialogState.DELETED:
            return False
        if state is DialogState.EARLY:
            self.early -= 1
        now = self.clock()
        dlg.state = DialogState.CONFIRMED
        dlg.to_tag = to_tag
        dlg.callee_contact = contact
        dlg.caller_route_set = caller_route_set
        dlg.callee_route_set = callee_route_set
        dlg.callee_sock = sock
        dlg.start_time = now
        dlg.expires = now + dlg.lifetime
        dlg.invite_ctx = None
        self.pending.pop(dlg.id, None)
        self.active += 1
        self._schedule(dlg)
        self._fire(dlg, CONFIRMED)
        self.changed(dlg)
        return True

    def request(
        self, dlg: Dialog, from_caller: bool, method: str, cseq: int, contact: str | None = None
    ) -> None:
        """An in-dialog request: CSeq per direction, BYE ends, re-INVITE/UPDATE refresh."""
        if dlg.state is DialogState.DELETED or method in _NO_CSEQ:
            return
        if from_caller:
            dlg.caller_cseq = max(dlg.caller_cseq, cseq)
        elif cseq > dlg.callee_cseq:
            dlg.callee_cseq = cseq
        if method == "BYE":
            self.end(dlg, TERMINATED)
            return
        if method in _REFRESHING and dlg.state is DialogState.CONFIRMED:
            if contact:  # a target refresh of the sender (RFC 3261 §12.2.2)
                if from_caller:
                    dlg.caller_contact = contact
                else:
                    dlg.callee_contact = contact
            self._refresh(dlg)
        self.changed(dlg)

    def answered(self, dlg: Dialog, from_caller: bool, method: str, status: int,
                 contact: str | None = None) -> None:
        """The final response to an in-dialog request (``from_caller``: who sent it)."""
        if dlg.state is not DialogState.CONFIRMED:
            return
        if 200 <= status < 300 and method in _REFRESHING:
            if contact:  # the answerer's target refresh
                if from_caller:
                    dlg.callee_contact = contact
                else:
                    dlg.caller_contact = contact
            self._refresh(dlg)
            self.changed(dlg)

    def set_timeout(self, dlg: Dialog, seconds: int) -> None:
        if isinstance(seconds, bool) or not isinstance(seconds, int) or seconds < 1:
            raise DialogError(f"a dialog timeout is a whole number of seconds >= 1, not {seconds!r}")
        if dlg.state is DialogState.DELETED:
            raise DialogError(f"dialog {dlg.id} has ended")
        dlg.lifetime = seconds
        if dlg.state is DialogState.CONFIRMED:
            self._refresh(dlg)
            self.changed(dlg)

    def _refresh(self, dlg: Dialog) -> None:
        dlg.expires = self.clock() + dlg.lifetime
        self._schedule(dlg)

    def _schedule(self, dlg: Dialog) -> None:
        assert dlg.expires is not None
        heapq.heappush(self._expiry, (dlg.expires, next(self._seq), dlg))

    # ------------------------------------------------------------------ the end
    def end(self, dlg: Dialog, event: str = TERMINATED) -> bool:
        """End ``dlg`` (``terminated``, ``expired`` or ``failed``); False if it had ended.

        The dialog leaves its profiles and the indexes first, then the callbacks of
        ``event`` run, then those of ``ended``.
        """
        if event not in (TERMINATED, EXPIRED, FAILED):
            raise ValueError(f"a dialog ends as terminated, expired or failed, not {event!r}")
        state = dlg.state
        if state is DialogState.DELETED:
            return False
        if state is DialogState.EARLY:
            self.early -= 1
        elif state is DialogState.CONFIRMED:
            self.active -= 1
        dlg.state = DialogState.DELETED
        dlg.end_event = event
        dlg.invite_ctx = None
        self.dialogs.pop(dlg.id, None)
        self.pending.pop(dlg.id, None)
        siblings = self.by_callid.get(dlg.callid)
        if siblings is not None:
            try:
                siblings.remove(dlg)
            except ValueError:
                pass
            if not siblings:
                del self.by_callid[dlg.callid]
        by_name = self.profiles.by_name
        for name, value in dlg.profiles:
            profile = by_name.get(name)
            if profile is not None:
                profile.discard(value, dlg)
        if event == EXPIRED:
            self.expired += 1
        elif event == FAILED:
            self.failed += 1
        else:
            self.terminated += 1
        if dlg.stored and self.store is not None:
            self.store.removed(dlg)
        self._fire(dlg, event)
        self._fire(dlg, ENDED)
        return True

    def expire_due(self, now: float | None = None) -> list[Dialog]:
        """End every confirmed dialog whose lifetime is over; returns them (for the BYEs)."""
        if now is None:
            now = self.clock()
        heap = self._expiry
        out: list[Dialog] = []
        while heap and heap[0][0] <= now:
            when, _, dlg = heapq.heappop(heap)
            if dlg.state is not DialogState.CONFIRMED or dlg.expires != when:
                continue  # ended, or refreshed since (a later entry is in the heap)
            self.end(dlg, EXPIRED)
            out.append(dlg)
        return out

    def check_pending(
        self, now: float | None = None, outcome: Callable[[Dialog], bool | None] | None = None
    ) -> list[Dialog]:
        """Fail the unconfirmed dialogs whose INVITE is over; returns them.

        ``outcome(dlg)`` says what the transaction shows: True (it ended without a
        2xx), False (still running) or None (nothing to see, e.g. not relayed yet).
        Besides, a dialog never relayed fails after ``unrouted_timeout`` and any
        unconfirmed dialog after ``unconfirmed_timeout``.
        """
        if not self.pending:
            return []
        if now is None:
            now = self.clock()
        config = self.config
        out = []
        for dlg in list(self.pending.values()):
            verdict = outcome(dlg) if outcome is not None else None
            age = now - dlg.created
            over = (
                verdict
                or age >= config.unconfirmed_timeout
                or (not dlg.relayed and age >= config.unrouted_timeout)
            )
            if over and self.end(dlg, FAILED):
                out.append(dlg)
        return out

    # ------------------------------------------------------------------ profiles
    def set_profile(self, dlg: Dialog, name: str, value: Any = None) -> None:
        if dlg.state is DialogState.DELETED:
            raise DialogError(f"dialog {dlg.id} has ended: it cannot join profile {name!r}")
        if value is not None and not isinstance(value, str):
            value = str(value)
        profile = self.profiles.get(name, value, setting=True)
        if profile.add(value, dlg):
            dlg.profiles.add((name, value))
            self.changed(dlg)

    def unset_profile(self, dlg: Dialog, name: str, value: Any = None) -> bool:
        if value is not None and not isinstance(value, str):
            value = str(value)
        profile = self.profiles.get(name, value)
        if value is None and profile.with_value:
            pairs = [p for p in dlg.profiles if p[0] == name]
        else:
            pairs = [(name, value)] if (name, value) in dlg.profiles else []
        for pair in pairs:
            dlg.profiles.discard(pair)
            if dlg.state is not DialogState.DELETED:
                profile.discard(pair[1], dlg)
        if pairs:
            self.changed(dlg)
        return bool(pairs)

    def profile_size(self, name: str, value: Any = None) -> int:
        """OpenSIPS ``get_profile_size``: live dialogs in the profile (with ``value``)."""
        if value is not None and not isinstance(value, str):
            value = str(value)
        return self.profiles.get(name, value).count(value)

    # ------------------------------------------------------------------ callbacks
    def subscribe(self, event: str, callback: Callback) -> None:
        """Call ``callback(dlg, event)`` for every dialog reaching ``event``."""
        if event not in EVENTS:
            raise ValueError(f"unknown dialog event {event!r} (one of {', '.join(sorted(EVENTS))})")
        self.subscribers.setdefault(event, []).append(callback)

    def unsubscribe(self, event: str, callback: Callback) -> None:
        callbacks = self.subscribers.get(event)
        if callbacks and callback in callbacks:
            callbacks.remove(callback)

    def _fire(self, dlg: Dialog, event: str) -> None:
        callbacks = self.subscribers.get(event)
        own = dlg.callbacks.get(event) if dlg.callbacks is not None else None
        if not callbacks and not own:
            return
        for callback in (*(callbacks or ()), *(own or ())):
            try:
                result = callback(dlg, event)
            except Exception:
                log.exception("dialog %s: %s callback %r failed", dlg.id, event, callback)
                continue
            if inspect.isawaitable(result):
                if self.spawn is not None:
                    self.spawn(_logged(result, dlg, event))
                else:  # no event loop to run it on (unit tests)
                    close = getattr(result, "close", None)
                    if close is not None:
                        close()
                    log.error("dialog %s: %s callback %r returned an awaitable, but no "
                              "loop runs the table", dlg.id, event, callback)

    # ------------------------------------------------------------------ storage
    def changed(self, dlg: Dialog) -> None:
        if self.store is not None and dlg.state is DialogState.CONFIRMED:
            dlg.stored = True  # from now on its end is reported too
            self.store.changed(dlg)


async def _logged(awaitable: Any, dlg: Dialog, event: str) -> None:
    try:
        await awaitable
    except Exception:
        log.exception("dialog %s: asynchronous %s callback failed", dlg.id, event)


def _direction(dlg: Dialog, from_tag: str | None, to_tag: str | None) -> bool | None:
    """True: the caller sent it; False: the callee; None: not this dialog."""
    own_to = dlg.to_tag
    if from_tag == dlg.from_tag:
        if own_to is None or to_tag is None or to_tag == own_to:
            return True
        return None  # a sibling dialog of a forked INVITE
    if to_tag == dlg.from_tag and from_tag is not None and (own_to is None or from_tag == own_to):
        return False
    return None
