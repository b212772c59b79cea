"""Subscribers in memory, the database as their durable copy.

The message path only reads a dict. The database is read off the event loop,
in one dedicated thread:

- at startup, and every ``reload_interval`` seconds, the whole table is
  reloaded (picks up every change, ``rm`` and ``passwd`` included);
- a user that is not in memory, or whose password did not match, is looked up
  on its own (:meth:`SubscriberStore.fetch`), at most once per
  ``lookup_interval`` seconds per user, with a bounded number of lookups in
  flight: ``sipline user add`` works at the next attempt, a flood of unknown
  names costs a bounded amount of SQL.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Executor
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from sipline_auth.digest import HA1_COLUMNS, ha1
from sipline_auth.models import subscriber

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

log = logging.getLogger("sipline.auth")

Key = tuple[str, str]  # (username, domain lowercased)

#: Single-user lookups waiting for the database at once; beyond, a miss is a miss.
MAX_IN_FLIGHT = 64
#: Users whose last lookup time is remembered (for ``lookup_interval``).
MAX_TRACKED = 10_000


class Account:
    """One subscriber's credentials."""

    __slots__ = ("username", "domain", "password", "ha1", "_derived")

    def __init__(self, username: str, domain: str, password: str, ha1: dict[str, str]) -> None:
        self.username = username
        self.domain = domain
        self.password = password
        self.ha1 = ha1  # algorithm -> hex, only non-empty columns
        self._derived: dict[tuple[str, str], str] = {}

    def ha1_for(self, algorithm: str, realm: str) -> str | None:
        """HA1 for ``algorithm`` in ``realm``: from the plaintext when kept, else the column.

        The columns hold HA1 for the realm that was in force when the password
        was set (``[plugins.auth] realm``, else the domain), as in OpenSIPS.
        """
        if self.password:
            key = (algorithm, realm)
            value = self._derived.get(key)
            if value is None:
                value = ha1(algorithm, self.username, realm, self.password)
                if len(self._derived) < 16:
                    self._derived[key] = value
            return value
        return self.ha1.get(algorithm)


_COLUMNS = (subscriber.c.username, subscriber.c.domain, subscriber.c.password,
            *(subscriber.c[c] for c in HA1_COLUMNS.values()))


def _account(row: Any) -> Account:
    username, domain, password, *hashes = row
    return Account(
        username,
        domain.lower(),
        password or "",
        {alg: h.lower() for alg, h in zip(HA1_COLUMNS, hashes) if h},
    )


def load_accounts(engine: Engine) -> dict[Key, Account]:
    """Every subscriber (blocking: run it in a thread)."""
    with engine.connect() as conn:
        accounts = (_account(row) for row in conn.execute(select(*_COLUMNS)))
        return {(a.username, a.domain): a for a in accounts}


def load_account(engine: Engine, username: str, domain: str) -> Account | None:
    """One subscriber, or None (blocking: run it in a thread)."""
    query = select(*_COLUMNS).where(subscriber.c.username == username,
                                    subscriber.c.domain == domain)
    with engine.connect() as conn:
        row = conn.execute(query).first()
    return _account(row) if row is not None else None


class SubscriberStore:
    """The in-memory subscriber table of one worker."""

    def __init__(
        self,
        load_all: Callable[[], dict[Key, Account]],
        load_one: Callable[[str, str], Account | None],
        executor: Executor,
        *,
        lookup_interval: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._load_all = load_all
        self._load_one = load_one
        self._executor = executor
        self.lookup_interval = lookup_interval
        self.clock = clock
        self.accounts: dict[Key, Account] = {}
        self._looked_up: OrderedDict[Key, float] = OrderedDict()
        self._in_flight: dict[Key, asyncio.Future[Account | None]] = {}
        self.reloads = 0
        self.lookups = 0

    def __len__(self) -> int:
        return len(self.accounts)

    def get(self, username: str, domain: str) -> Account | None:
        return self.accounts.get((username, domain))

    def may_look_up(self, key: Key) -> bool:
        """True when a database lookup of ``key`` is in flight or allowed now."""
        if key in self._in_flight:
            return True
        if len(self._in_flight) >= MAX_IN_FLIGHT:
            return False
        last = self._looked_up.get(key)
        return last is None or self.clock() - last >= self.lookup_interval

    async def fetch(self, key: Key) -> Account | None:
        """Look ``key`` up in the database (or join the lookup in flight); update memory."""
        pending = self._in_flight.get(key)
        if pending is None:
            if not self.may_look_up(key):
                return self.accounts.get(key)
            self._note_lookup(key)
            pending = asyncio.get_running_loop().run_in_executor(
                self._executor, self._load_one, *key
            )
            self._in_flight[key] = pending
            pending.add_done_callback(lambda f, k=key: self._landed(k, f))  # type: ignore[misc]
        try:
            await asyncio.shield(pending)
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001, S110 - logged by _landed, memory stays as it was
            pass
        # A lookup that finished before this await returns at once, possibly before
        # its done-callback ran: apply the result here (_landed runs once per lookup).
        self._landed(key, pending)
        return self.accounts.get(key)

    def _note_lookup(self, key: Key) -> None:
        looked = self._looked_up
        looked[key] = self.clock()
        looked.move_to_end(key)
        while len(looked) > MAX_TRACKED:
            looked.popitem(last=False)

    def _landed(self, key: Key, future: asyncio.Future[Account | None]) -> None:
        if self._in_flight.get(key) is not future:
            return  # already applied
        del self._in_flight[key]
        if future.cancelled():
            return
        exc = future.exception()
        if exc is not None:
            log.warning("looking up subscriber %s@%s failed: %s", *key, exc)
            return
        self.lookups += 1
        account = future.result()
        if account is None:
            self.accounts.pop(key, None)  # removed from the database
        else:
            self.accounts[key] = account

    async def reload(self) -> int:
        """Replace the memory copy with the whole table; returns the number of subscribers."""
        started = self.clock()
        accounts = await asyncio.get_running_loop().run_in_executor(
            self._executor, self._load_all
        )
        # A single lookup that landed while the table was being read is newer.
        looked = self._looked_up
        for key in reversed(looked):
            if looked[key] < started:
                break
            if key in self.accounts:
                accounts[key] = self.accounts[key]
        self.accounts = accounts
        self.reloads += 1
        return len(accounts)
