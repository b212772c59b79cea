"""SQL storage of the location service: the modes of OpenSIPS usrloc ``db_mode``.

- ``memory``: :class:`~sipline_registrar.location.LocationStore` alone.
- ``write-through``: the memory store serves every lookup; each change is handed
  to a writer thread the moment it happens and committed within milliseconds.
- ``write-back``: the memory store serves every lookup; changed bindings are
  collected and handed to the writer thread every ``write_back_interval`` seconds
  (several refreshes of one binding cost one write) and at shutdown.
- ``sql-only``: no cache; every read and write is a query (:class:`SqlOnlyStore`).

In the three SQL modes the bindings are loaded again at startup. The memory-backed
modes never run SQL on the event loop: the loop only computes which bindings changed
and puts them on a queue; :class:`SqlWriter` turns a queue's worth of changes into
one transaction (one DELETE of the touched rows, one multi-row INSERT), so its cost
per REGISTER falls as the load rises.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from sipline.db import BatchWriter
from sipline.sip import split_comma

from sipline_registrar.location import Binding, LocationStore, best_first
from sipline_registrar.models import location

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection, Engine

log = logging.getLogger("sipline.plugin.registrar")

Clock = Callable[[], float]
#: (aor, contact key, the new binding or None when it is gone)
Change = tuple[str, str, "Binding | None"]

BATCH_ROWS = 500  # rows per statement: bounded IN lists and INSERTs
#: The writer thread's statements are smaller and separated by a short sleep: it shares
#: the GIL with the event loop, which must keep answering while a flush runs.
WRITER_CHUNK = 100
WRITER_PAUSE = 0.003


def contact_id(aor: str, key: str) -> int:
    """The row id of a binding: a 63-bit hash of AOR and contact key, stable across restarts."""
    digest = hashlib.blake2b(f"{aor}\n{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 1


def split_aor(aor: str) -> tuple[str, str]:
    username, _, domain = aor.rpartition("@")
    return username, domain


def wall_offset(clock: Clock) -> float:
    """What to add to a time on ``clock`` to get a Unix time."""
    return time.time() - clock()


def to_row(aor: str, key: str, b: Binding, offset: float, modified: datetime) -> dict[str, Any]:
    """A binding as a row of ``location`` (times converted from ``clock`` to Unix time)."""
    username, domain = split_aor(aor)
    extra: dict[str, Any] = {"created": round(b.created + offset, 3)}
    if b.reg_id is not None:
        extra["reg_id"] = b.reg_id
    if key != b.contact:
        extra["key"] = key
    return {
        "contact_id": contact_id(aor, key),
        "username": username,
        "domain": domain,
        "contact": b.contact,
        "received": b.received,
        "path": ",".join(b.path) or None,
        "expires": round(b.expires + offset),
        "q": b.q,
        "callid": b.callid,
        "cseq": b.cseq,
        "last_modified": modified,
        "flags": 0,
        "cflags": ",".join(sorted(b.flags)) or None,
        "user_agent": b.user_agent or "",
        "socket": b.socket,
        "methods": b.methods,
        "sip_instance": b.instance,
        "kv_store": json.dumps(extra, separators=(",", ":")),
        "attr": None,
    }


def from_row(row: Mapping[Any, Any], offset: float) -> tuple[str, str, Binding]:
    """``(aor, key, binding)`` from a row; Unix times become times on the store's clock."""
    extra: dict[str, Any] = {}
    if row["kv_store"]:
        try:
            loaded = json.loads(row["kv_store"])
        except ValueError:
            loaded = None
        if isinstance(loaded, dict):
            extra = loaded
    expires = row["expires"] - offset
    created = extra.get("created")
    binding = Binding(
        contact=row["contact"],
        expires=expires,
        q=row["q"],
        callid=row["callid"],
        cseq=row["cseq"],
        received=row["received"],
        path=tuple(split_comma(row["path"], allow_empty=True)) if row["path"] else (),
        instance=row["sip_instance"],
        reg_id=extra.get("reg_id") if isinstance(extra.get("reg_id"), int) else None,
        user_agent=row["user_agent"] or None,
        socket=row["socket"],
        flags=frozenset(f for f in (row["cflags"] or "").split(",") if f),
        created=created - offset if isinstance(created, (int, float)) else 0.0,
        methods=row["methods"],
    )
    aor = f"{row['username']}@{row['domain']}" if row["domain"] else row["username"]
    return aor, str(extra.get("key", row["contact"])), binding


def _now_utc() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


def apply_changes(conn: Connection, changes: list[Change], offset: float, *,
                  delete: bool = True, chunk: int = BATCH_ROWS, pause: float = 0.0) -> None:
    """Write ``changes`` in ``conn``'s transaction: the last change of a binding wins.

    The touched rows are deleted (one statement per ``chunk`` rows) and the
    bindings that remain inserted: portable, where an upsert is not. ``pause``
    seconds of sleep after each statement hand the GIL back to the event loop,
    so that a large write-back flush slows down instead of stalling SIP.
    """
    latest: dict[int, tuple[str, str, Binding | None]] = {}
    for aor, key, binding in changes:
        latest[contact_id(aor, key)] = (aor, key, binding)
    ids = list(latest) if delete else []
    for i in range(0, len(ids), chunk):
        conn.execute(location.delete().where(location.c.contact_id.in_(ids[i:i + chunk])))
        if pause:
            time.sleep(pause)
    modified = _now_utc()
    live = [(a, k, b) for a, k, b in latest.values() if b is not None]
    for i in range(0, len(live), chunk):
        conn.execute(location.insert(),
                     [to_row(a, k, b, offset, modified) for a, k, b in live[i:i + chunk]])
        if pause:
            time.sleep(pause)


def load_bindings(engine: Engine, clock: Clock) -> list[tuple[str, str, Binding]]:
    """Every live binding in the table (the expired ones are deleted on the way)."""
    from sqlalchemy import select

    offset = wall_offset(clock)
    with engine.begin() as conn:
        conn.execute(location.delete().where(location.c.expires <= int(time.time())))
        rows = conn.execute(select(location)).mappings().all()
    return [from_row(row, offset) for row in rows]


class Connections:
    """One long-lived connection per thread and kind.

    Checking a connection out of the pool for each query costs a round trip on
    PostgreSQL (the reset on return) and more than the query itself; a reader
    connection in autocommit mode needs no BEGIN/COMMIT either. A connection that
    breaks (server restarted) is replaced, and the work tried once more.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._local = threading.local()
        self._all: list[Connection] = []
        self._lock = threading.Lock()

    def _get(self, kind: str) -> Connection:
        conn = getattr(self._local, kind, None)
        if conn is None or conn.closed or conn.invalidated:
            conn = self.engine.connect()
            if kind == "read":
                conn = conn.execution_options(isolation_level="AUTOCOMMIT")
            setattr(self._local, kind, conn)
            with self._lock:
                self._all.append(conn)
        return conn

    def _drop(self, kind: str) -> None:
        conn = getattr(self._local, kind, None)
        setattr(self._local, kind, None)
        if conn is not None:
            with self._lock:
                if conn in self._all:
                    self._all.remove(conn)
            _close(conn)

    def read(self, work: Callable[[Connection], Any]) -> Any:
        """Run ``work`` on this thread's autocommit connection."""
        return self._run("read", work)

    def write(self, work: Callable[[Connection], Any]) -> Any:
        """Run ``work`` in a transaction on this thread's writing connection."""

        def in_transaction(conn: Connection) -> Any:
            with conn.begin():
                return work(conn)

        return self._run("write", in_transaction)

    def _run(self, kind: str, work: Callable[[Connection], Any]) -> Any:
        from sqlalchemy.exc import DBAPIError

        try:
            return work(self._get(kind))
        except DBAPIError as exc:
            self._drop(kind)
            if not exc.connection_invalidated:
                raise
        return work(self._get(kind))  # the connection had broken: once more, on a new one

    def close(self) -> None:
        """Close every thread's connections (when no thread uses them any more)."""
        with self._lock:
            conns, self._all = self._all, []
        for conn in conns:
            _close(conn)


def _close(conn: Connection) -> None:
    """Close ``conn``; one the server already dropped is closed at the driver level."""
    try:
        conn.close()
    except Exception:  # noqa: BLE001 - broken: its reset on return failed
        try:
            conn.invalidate()
        except Exception:  # noqa: BLE001
            pass


class SqlWriter(BatchWriter[Change]):
    """The ``location`` table's writer thread (see :class:`sipline.db.BatchWriter`)."""

    def __init__(self, engine: Engine, clock: Clock) -> None:
        self._connections = Connections(engine)
        self._clock = clock
        super().__init__("location table", "registrar-sql-writer")

    def write_batch(self, batch: list[Change]) -> None:
        self._connections.write(
            lambda conn: apply_changes(conn, batch, wall_offset(self._clock),
                                       chunk=WRITER_CHUNK, pause=WRITER_PAUSE)
        )

    def refused(self, batch: list[Change], exc: Exception) -> None:
        # A row the database refuses: write the others one by one, never retry it.
        if len(batch) > 1:
            for change in batch:
                self.write([change])
        else:
            log.error("location table: binding %s of %s not stored: %s",
                      batch[0][1], batch[0][0], exc)

    def closed(self) -> None:
        self._connections.close()


class CachedSqlStore(LocationStore):
    """The memory store of write-through and write-back: changes are journalled for SQL.

    Every mutation records ``(aor, key) -> binding or None`` in a dirty map; in
    write-through mode the map is handed to the writer at once, in write-back mode
    by :meth:`flush` (the plugin's timer, and shutdown).
    """

    def __init__(self, engine: Engine, clock: Clock, *, write_through: bool) -> None:
        super().__init__()
        self.write_through = write_through
        self.periodic_flush = not write_through
        self._dirty: dict[tuple[str, str], Binding | None] = {}
        for aor, key, binding in load_bindings(engine, clock):
            super().put(aor, key, binding)
        self.writer = SqlWriter(engine, clock)  # after the load: a missing table fails first

    def _changed(self, aor: str, key: str, binding: Binding | None) -> None:
        self._dirty[(aor, key)] = binding

    def _done(self) -> None:
        if self.write_through and self._dirty:
            self.flush()

    def flush(self) -> int:
        """Hand every pending change to the writer thread; returns how many."""
        dirty = self._dirty
        if not dirty:
            return 0
        self._dirty = {}
        self.writer.submit([(aor, key, b) for (aor, key), b in dirty.items()])
        return len(dirty)

    def put(self, aor: str, key: str, binding: Binding) -> None:
        super().put(aor, key, binding)
        self._changed(aor, key, binding)
        self._done()

    def replace(self, aor: str, bindings: Mapping[str, Binding]) -> None:
        old = self.entries(aor)
        for key, binding in old.items():
            if key not in bindings:
                self._changed(aor, key, None)
        for key, binding in bindings.items():
            if old.get(key) is not binding:
                self._changed(aor, key, binding)
        super().replace(aor, bindings)
        self._done()

    def remove(self, aor: str, key: str) -> None:
        if self.get(aor, key) is not None:
            self._changed(aor, key, None)
        super().remove(aor, key)
        self._done()

    def remove_aor(self, aor: str) -> None:
        for key in self.entries(aor):
            self._changed(aor, key, None)
        super().remove_aor(aor)
        self._done()

    def expire(self, now: float) -> int:
        gone = self._drop_expired(now)
        for aor, key in gone:
            self._changed(aor, key, None)
        self._done()
        return len(gone)

    def close(self) -> None:
        """Write everything still pending, then stop the writer (blocks: call off the loop)."""
        self.flush()
        self.writer.close()


class SqlOnlyStore(LocationStore):
    """OpenSIPS ``db_mode=3``: no cache, the table is the store (workers and nodes share it).

    Every method is a query in the caller's thread, on that thread's own connection
    (:class:`Connections`) with prebuilt statements: the plugin runs REGISTER
    processing and expiry in its own thread; a lookup reads on the event loop (one
    indexed SELECT).
    """

    def __init__(self, engine: Engine, clock: Clock) -> None:
        from sqlalchemy import bindparam, func, select

        super().__init__()
        self.clock = clock
        self.connections = Connections(engine)
        account = (location.c.username == bindparam("username"),
                   location.c.domain == bindparam("domain"))
        self._by_account = select(location).where(*account)
        self._live_by_account = select(location).where(
            *account, location.c.expires > bindparam("wall"))
        self._by_id = select(location).where(location.c.contact_id == bindparam("id"))
        self._delete_account = location.delete().where(*account)
        self._delete_expired = location.delete().where(location.c.expires <= bindparam("wall"))
        self._accounts = select(location.c.username, location.c.domain).distinct()
        self._count = select(func.count()).select_from(location)
        load_bindings(engine, clock)  # fails early when the table is missing

    def _select(self, statement: Any, **params: Any) -> list[tuple[str, str, Binding]]:
        rows = self.connections.read(
            lambda conn: conn.execute(statement, params).mappings().all()
        )
        offset = wall_offset(self.clock)
        return [from_row(row, offset) for row in rows]

    @staticmethod
    def _account(aor: str) -> dict[str, str]:
        username, domain = split_aor(aor)
        return {"username": username, "domain": domain}

    def bindings(self, aor: str, now: float) -> list[Binding]:
        wall = int(now + wall_offset(self.clock))
        found = self._select(self._live_by_account, wall=wall, **self._account(aor))
        return best_first(b for _, _, b in found if b.expires > now)

    def entries(self, aor: str) -> Mapping[str, Binding]:
        return {key: b for _, key, b in self._select(self._by_account, **self._account(aor))}

    def get(self, aor: str, key: str) -> Binding | None:
        found = self._select(self._by_id, id=contact_id(aor, key))
        return found[0][2] if found else None

    def _write(self, changes: list[Change], *, aor: str | None = None) -> None:
        def work(conn: Connection) -> None:
            if aor is not None:  # the whole AOR is replaced: its rows are gone already
                conn.execute(self._delete_account, self._account(aor))
            apply_changes(conn, changes, wall_offset(self.clock), delete=aor is None)

        self.connections.write(work)

    def put(self, aor: str, key: str, binding: Binding) -> None:
        self._write([(aor, key, binding)])

    def replace(self, aor: str, bindings: Mapping[str, Binding]) -> None:
        self._write([(aor, key, b) for key, b in bindings.items()], aor=aor)

    def remove(self, aor: str, key: str) -> None:
        self._write([(aor, key, None)])

    def remove_aor(self, aor: str) -> None:
        self._write([], aor=aor)

    def count(self, aor: str) -> int:
        return len(self.entries(aor))

    def expire(self, now: float) -> int:
        wall = int(now + wall_offset(self.clock))
        result = self.connections.write(
            lambda conn: conn.execute(self._delete_expired, {"wall": wall}).rowcount
        )
        return max(int(result), 0)

    def aors(self) -> list[str]:
        rows = self.connections.read(lambda conn: conn.execute(self._accounts).all())
        return [f"{u}@{d}" if d else u for u, d in rows]

    def __iter__(self) -> Iterator[tuple[str, Mapping[str, Binding]]]:
        grouped: dict[str, dict[str, Binding]] = {}
        for aor, key, b in self._select(select_all()):
            grouped.setdefault(aor, {})[key] = b
        return iter(grouped.items())

    @property
    def users(self) -> int:
        return len(self.aors())

    @property
    def contacts(self) -> int:
        return int(self.connections.read(lambda conn: conn.execute(self._count).scalar_one()))

    def close(self) -> None:
        self.connections.close()


def select_all() -> Any:
    from sqlalchemy import select

    return select(location)


def open_store(mode: str, engine: Engine, clock: Clock) -> LocationStore:
    """The store of a SQL ``db_mode``; the bindings are loaded from the table."""
    if mode == "sql-only":
        return SqlOnlyStore(engine, clock)
    return CachedSqlStore(engine, clock, write_through=mode == "write-through")
