"""Database access shared by plugins: the SQLAlchemy engine, Alembic, the schema status.

One engine per process from ``[database] url`` (SQLite file in the data dir by default).
Migrations: the core's root revision lives in ``sipline.migrations``; each plugin adds the
folder of its own revisions through an entry point in the group ``sipline.migrations``
whose value is a module (the folder it lives in) or a ``module:attribute`` naming a path.
The entry point's name is the plugin's name, which is also its Alembic branch label.

:func:`schema_status` compares the revisions applied to a database with the heads of
every installed branch; :func:`upgrade`, :func:`downgrade` and :func:`history` back
``sipline db``; :func:`ensure_schema` is the check ``sipline run`` makes before serving.
Every failure is a :class:`DatabaseError` whose message says what to do.
"""

from __future__ import annotations

import importlib
import logging
import os
import queue
import threading
from collections.abc import Callable, Collection
from dataclasses import dataclass
from importlib.metadata import entry_points
from importlib.resources import files
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeVar

if TYPE_CHECKING:
    from alembic.config import Config as AlembicConfig
    from alembic.script import ScriptDirectory
    from sqlalchemy.engine import Engine

    from sipline.config import Config

MIGRATIONS_GROUP = "sipline.migrations"

log = logging.getLogger("sipline.db")


def migrations_dir() -> Path:
    """The installed Alembic environment (``env.py``, the core's ``versions/``)."""
    return Path(str(files("sipline.migrations")))


def migration_plugins() -> set[str]:
    """Names of the installed plugins that ship migrations (no module is imported)."""
    return {ep.name for ep in entry_points(group=MIGRATIONS_GROUP)}


def plugin_version_locations() -> dict[str, Path]:
    """Plugin name -> folder of its Alembic revisions, from the entry points.

    A plugin whose entry point cannot be loaded is skipped with a logged warning
    (as ``sipline --help`` skips a broken plugin's commands): one broken
    installation must not block the migrations of the others.
    """
    out: dict[str, Path] = {}
    for ep in entry_points(group=MIGRATIONS_GROUP):
        module_name, _, attr = ep.value.partition(":")
        try:
            module = importlib.import_module(module_name.strip())
            if attr:
                out[ep.name] = Path(getattr(module, attr.strip()))
            else:
                out[ep.name] = Path(module.__file__ or "").parent
        except Exception as exc:  # noqa: BLE001 - reported, the others still migrate
            log.warning("plugin %r: migrations skipped (entry point %s = %s): %s: %s",
                        ep.name, MIGRATIONS_GROUP, ep.value, type(exc).__name__, exc)
    return out


def alembic_config(url: str) -> AlembicConfig:
    """An Alembic configuration for ``url`` with the core's and every plugin's revisions."""
    from alembic.config import Config as AlembicConfig

    here = migrations_dir()
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(here))
    locations = [str(here / "versions"), *map(str, plugin_version_locations().values())]
    # A separator no path contains: the default splits on spaces.
    cfg.set_main_option("path_separator", "newline")
    cfg.set_main_option("version_locations", "\n".join(locations))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def make_engine(url: str, **kwargs: Any) -> Engine:
    """A SQLAlchemy engine for ``url`` (keyword arguments go to ``create_engine``).

    SQLite files are switched to write-ahead logging with ``synchronous=NORMAL``:
    readers (a lookup, the CLI, another worker) then never wait for a writer, and
    a commit costs no fsync; only a power loss can undo the last commits.
    """
    from sqlalchemy import create_engine, event

    _prepare_sqlite_dir(url)
    engine = create_engine(url, **kwargs)
    if engine.dialect.name == "sqlite" and (engine.url.database or ":memory:") != ":memory:":
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
    finally:
        cursor.close()


def _sqlite_file(url: str) -> Path | None:
    """The file of a SQLite URL, None for anything else (or an in-memory database)."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database)


def _prepare_sqlite_dir(url: str) -> None:
    path = _sqlite_file(url)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)


def display_url(url: str) -> str:
    """``url`` with its password masked, for messages."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - a malformed URL is shown as the user wrote it
        return url


_engines: dict[str, Engine] = {}


def engine_for(config: Config) -> Engine:
    """The process's shared engine for ``[database] url`` (created on first use).

    Plugins call this from ``startup`` (never per message: SQL stays off the
    message path). A forked worker must not reuse its parent's connections,
    so the cache is keyed by process as well as by URL.
    """
    url = config.database_url
    key = f"{os.getpid()} {url}"
    engine = _engines.get(key)
    if engine is None:
        engine = _engines[key] = make_engine(url)
    return engine


def auto_upgrade(config: Config) -> bool:
    """``[database] auto_upgrade``; unset means true for the embedded SQLite only."""
    value = config.database.auto_upgrade
    return config.database.url is None if value is None else value


# ------------------------------------------------------------------ schema status


class DatabaseError(Exception):
    """The database cannot be reached or migrated; the message says what to do."""


class SchemaBehind(DatabaseError):
    """Branches the configuration needs are not at their head revision."""

    def __init__(self, message: str, branches: list[BranchStatus]) -> None:
        super().__init__(message)
        self.branches = branches


@dataclass(frozen=True)
class BranchStatus:
    """One Alembic branch (a plugin, or the core): its head and what the database has."""

    name: str  # the branch label: "core" or the plugin's name
    head: str  # the newest installed revision
    current: str | None  # the newest revision applied to the database, None if none

    @property
    def up_to_date(self) -> bool:
        return self.current == self.head

    def __str__(self) -> str:
        state = "up to date" if self.up_to_date else f"behind (head {self.head})"
        return f"{self.name}: {self.current or 'not installed'}, {state}"


@dataclass(frozen=True)
class SchemaStatus:
    """The database's revisions against the heads of every installed branch."""

    url: str  # for display: password masked
    branches: tuple[BranchStatus, ...]
    #: Revisions recorded in the database that no installed migration knows
    #: (typically a plugin that was uninstalled); they block nothing else.
    unknown: tuple[str, ...] = ()

    def behind(self, names: Collection[str] | None = None) -> list[BranchStatus]:
        """Branches not at their head, all of them or those in ``names``."""
        return [
            b for b in self.branches
            if not b.up_to_date and (names is None or b.name in names)
        ]


@dataclass(frozen=True)
class RevisionInfo:
    """One revision, for ``sipline db history``."""

    revision: str
    branch: str
    down: tuple[str, ...]
    doc: str
    applied: bool | None  # None when the database could not be read


#: ``on_step(text)``: told about every migration step as it runs.
StepCallback = Callable[[str], None]


def _script(url: str) -> tuple[AlembicConfig, ScriptDirectory]:
    from alembic.script import ScriptDirectory

    cfg = alembic_config(url)
    return cfg, ScriptDirectory.from_config(cfg)


def _branch_name(labels: Collection[str], fallback: str) -> str:
    return sorted(labels)[0] if labels else fallback


def _current_heads(url: str) -> tuple[str, ...]:
    """The revisions recorded in ``alembic_version`` (empty for a database never migrated)."""
    from alembic.runtime.migration import MigrationContext
    from sqlalchemy.exc import SQLAlchemyError
    from sqlalchemy.pool import NullPool

    path = _sqlite_file(url)
    if path is not None and not path.exists():
        return ()  # reading must not create the file
    try:
        engine = make_engine(url, poolclass=NullPool)
    except Exception as exc:  # noqa: BLE001 - bad URL, driver missing
        raise DatabaseError(f"database {display_url(url)}: {exc}") from exc
    try:
        with engine.connect() as conn:
            return tuple(MigrationContext.configure(conn).get_current_heads())
    except SQLAlchemyError as exc:
        raise DatabaseError(
            f"cannot read the schema of {display_url(url)}: {_reason(exc)}"
        ) from exc
    finally:
        engine.dispose()


def _reason(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None)
    return str(orig if orig is not None else exc).strip().splitlines()[0]


def _applied(script: ScriptDirectory, current: tuple[str, ...]) -> tuple[set[str], tuple[str, ...]]:
    """Every revision the database has (ancestors and dependencies of its heads), and the
    recorded revisions no installed migration knows."""
    known = tuple(r for r in current if _known(script, r))
    unknown = tuple(r for r in current if r not in known)
    applied = {r.revision for r in script.iterate_revisions(known, "base")} if known else set()
    return applied, unknown


def _known(script: ScriptDirectory, revision: str) -> bool:
    from alembic.util import CommandError

    try:
        return script.get_revision(revision) is not None
    except CommandError:
        return False


def schema_status(url: str) -> SchemaStatus:
    """Compare the database at ``url`` with the installed migrations (reads only)."""
    _, script = _script(url)
    applied, unknown = _applied(script, _current_heads(url))
    branches = []
    for head in sorted(script.get_heads()):
        rev = script.get_revision(head)
        assert rev is not None
        name = _branch_name(rev.branch_labels, head)
        current = None
        for older in script.iterate_revisions(head, "base"):
            in_branch = name in older.branch_labels or (not older.branch_labels and name == head)
            if in_branch and older.revision in applied:
                current = older.revision
                break
        branches.append(BranchStatus(name, head, current))
    return SchemaStatus(display_url(url), tuple(branches), unknown)


def _migrate(url: str, direction: str, target: str, on_step: StepCallback | None) -> list[str]:
    from alembic import command
    from alembic.util import CommandError
    from sqlalchemy.exc import SQLAlchemyError

    cfg, _ = _script(url)
    steps: list[str] = []

    def record(*, step: Any, **_: Any) -> None:
        if step.is_upgrade:
            text = f"upgrade {', '.join(step.down_revision_ids) or 'base'} -> {step.up_revision_id}"
        else:
            text = f"downgrade {step.up_revision_id} -> {', '.join(step.down_revision_ids) or 'base'}"
        doc = (step.up_revision.doc or "").strip().splitlines()
        if doc:
            text += f" ({doc[0]})"
        steps.append(text)
        if on_step is not None:
            on_step(text)

    cfg.attributes["on_version_apply"] = record
    _prepare_sqlite_dir(url)
    try:
        getattr(command, direction)(cfg, target)
    except CommandError as exc:
        raise DatabaseError(f"{direction} {target!r} on {display_url(url)}: {exc}") from exc
    except SQLAlchemyError as exc:
        raise DatabaseError(
            f"{direction} {target!r} on {display_url(url)} failed: {_reason(exc)}"
        ) from exc
    return steps


def upgrade(url: str, target: str = "heads", on_step: StepCallback | None = None) -> list[str]:
    """Apply migrations up to ``target`` (default: the head of every branch).

    :returns: one line per applied step (``upgrade core_root -> registrar_0001 (...)``).
    :raises DatabaseError: unreachable database, unknown target, failed migration.
    """
    return _migrate(url, "upgrade", target, on_step)


def downgrade(url: str, target: str, on_step: StepCallback | None = None) -> list[str]:
    """Revert migrations down to ``target`` (``registrar@base`` removes a plugin's tables)."""
    return _migrate(url, "downgrade", target, on_step)


def history(url: str) -> tuple[list[RevisionInfo], DatabaseError | None]:
    """Every installed revision, oldest first, marked applied or not.

    The database is only read to mark the revisions; when it cannot be read the
    revisions are still listed (``applied`` None) with the error.
    """
    _, script = _script(url)
    error: DatabaseError | None = None
    try:
        applied: set[str] | None = _applied(script, _current_heads(url))[0]
    except DatabaseError as exc:
        applied, error = None, exc
    out = []
    for rev in reversed(list(script.walk_revisions())):
        out.append(RevisionInfo(
            revision=rev.revision,
            branch=_branch_name(rev.branch_labels, rev.revision),
            down=_as_tuple(rev.down_revision),
            doc=(rev.doc or "").strip().splitlines()[0] if rev.doc else "",
            applied=None if applied is None else rev.revision in applied,
        ))
    return out, error


def _as_tuple(value: str | Collection[str] | None) -> tuple[str, ...]:
    if value is None:
        return ()
    return (value,) if isinstance(value, str) else tuple(value)


def required_branches(config: Config) -> list[str]:
    """The branches the configuration needs: the enabled plugins that ship migrations."""
    shipped = migration_plugins()
    return [name for name in config.server.plugins if name in shipped]


def ensure_schema(config: Config, on_step: StepCallback | None = None) -> list[str]:
    """Make sure the enabled plugins' tables are current before the server starts.

    Nothing is read when no enabled plugin ships migrations. A branch that is
    behind is upgraded when :func:`auto_upgrade` says so; otherwise
    :class:`SchemaBehind` names the branches and the command to run.

    :returns: the migration steps applied (empty when the schema was current).
    """
    needed = required_branches(config)
    if not needed:
        return []
    url = config.database_url
    status = schema_status(url)
    behind = status.behind(needed)
    if not behind:
        return []
    if not auto_upgrade(config):
        names = ", ".join(
            f"{b.name} (at {b.current or 'nothing'}, head {b.head})" for b in behind
        )
        command = "sipline db upgrade" + (f" -c {config.source}" if config.source else "")
        raise SchemaBehind(
            f"database schema is behind: {names} in {status.url}: run `{command}` "
            "(or set [database] auto_upgrade = true)",
            behind,
        )
    steps: list[str] = []
    for branch in behind:
        steps += upgrade(url, branch.head, on_step)
    return steps


# ---------------------------------------------------------------------------------------------
# A table's writer thread

#: Longest pause between two attempts while the database is unreachable (seconds).
RETRY_MAX = 30.0

Change = TypeVar("Change")


class _Flush:
    def __init__(self) -> None:
        self.done = threading.Event()


_STOP = object()


class BatchWriter(Generic[Change]):
    """One background thread applying batches of changes to a table, in order.

    The event loop only queues (:meth:`submit` never waits for the database);
    the thread takes everything queued at once as one batch and hands it to
    :meth:`write_batch`, which a plugin implements with its SQL. A batch that
    fails because the database is unreachable or locked is retried, with
    pauses growing to :data:`RETRY_MAX`, before anything queued after it;
    nothing is dropped unless the writer is closed while the database is
    still unreachable, which is logged with a count. A batch the database
    refuses (a constraint) goes to :meth:`refused` and is not retried.
    """

    def __init__(self, what: str, thread_name: str) -> None:
        self.what = what  # the table, in log messages
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._closing = threading.Event()
        self.transactions = 0
        self.rows = 0
        self.failures = 0
        self._thread = threading.Thread(target=self._run, name=thread_name, daemon=True)
        self._thread.start()

    # -- to implement -----------------------------------------------------------------------
    def write_batch(self, batch: list[Change]) -> None:
        """Write ``batch`` in one transaction (runs in the writer thread)."""
        raise NotImplementedError

    def refused(self, batch: list[Change], exc: Exception) -> None:
        """The database refused ``batch`` (not retried). By default: logged."""
        log.error("%s: %d change(s) refused by the database: %s", self.what, len(batch), exc)

    def closed(self) -> None:
        """Called in the writer thread when it stops (release connections here)."""

    # -- the event loop's side ------------------------------------------------------------
    def submit(self, changes: list[Change]) -> None:
        """Queue ``changes``."""
        if changes:
            self._queue.put(changes)

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything submitted so far is committed; False on timeout."""
        marker = _Flush()
        self._queue.put(marker)
        return marker.done.wait(timeout)

    def close(self, timeout: float = 10.0) -> None:
        """Write what is queued (within ``timeout``), then stop the thread."""
        if not self._thread.is_alive():
            return
        self._queue.put(_STOP)
        self._thread.join(timeout)
        if self._thread.is_alive():
            self._closing.set()  # stop retrying: give up on an unreachable database
            self._thread.join(RETRY_MAX)

    # -- the thread -------------------------------------------------------------------------
    def _run(self) -> None:
        stop = False
        while not stop:
            batch: list[Change] = []
            markers: list[_Flush] = []
            item = self._queue.get()
            while True:
                if item is _STOP:
                    stop = True
                elif isinstance(item, _Flush):
                    markers.append(item)
                else:
                    batch.extend(item)
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
            if batch:
                try:
                    self.write(batch)
                except Exception:  # a bug must not silence the writer for good
                    log.exception("%s: %d change(s) not written", self.what, len(batch))
            for marker in markers:
                marker.done.set()
        self.closed()

    def write(self, batch: list[Change]) -> None:
        """:meth:`write_batch` with the retries; counts transactions, rows and failures."""
        from sqlalchemy.exc import InterfaceError, OperationalError, SQLAlchemyError

        pause = 0.5
        while True:
            try:
                self.write_batch(batch)
            except (OperationalError, InterfaceError) as exc:  # unreachable, locked
                self.failures += 1
                if self._closing.is_set():
                    log.error("%s: %d change(s) lost, the database is unreachable: %s",
                              self.what, len(batch), exc)
                    return
                log.error("%s: write failed, retrying in %.1fs: %s", self.what, pause, exc)
                self._closing.wait(pause)
                pause = min(pause * 2, RETRY_MAX)
                continue
            except SQLAlchemyError as exc:
                self.failures += 1
                self.refused(batch, exc)
                return
            self.transactions += 1
            self.rows += len(batch)
            return
