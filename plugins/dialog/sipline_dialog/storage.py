"""Dialogs in the ``dialog`` table so that calls survive a restart (OpenSIPS ``db_mode``).

- ``write-through``: every change of a confirmed dialog (confirmation, CSeq, re-INVITE,
  variables, profiles, end) is queued at once to a writer thread;
- ``write-back``: changed dialogs are collected and queued every
  ``write_back_interval`` seconds and at shutdown (several changes cost one write).

The event loop never runs SQL: it turns a dialog into a row (a few dict and string
operations) and puts it on a queue. The writer thread commits whatever is queued as
one transaction (delete the touched rows, insert the live ones), retrying, in order,
while the database is unreachable. At startup every stored dialog is loaded back;
one whose timeout passed while the server was down expires at the first timer tick
(with its BYEs when it asked for them).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from sipline.db import BatchWriter
from sipline.sip import split_comma

from sipline_dialog.dialog import Dialog, DialogState
from sipline_dialog.models import dialog as dialog_table

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from sipline_dialog.table import DialogTable

log = logging.getLogger("sipline.plugin.dialog")

BATCH_ROWS = 500

#: (dlg_id, the row, or None when the dialog is gone)
Change = tuple[str, "dict[str, Any] | None"]


def to_row(dlg: Dialog, offset: float) -> dict[str, Any]:
    """A confirmed dialog as a row; clock times become Unix times (``offset`` added)."""
    return {
        "dlg_id": dlg.id,
        "callid": dlg.callid,
        "from_uri": dlg.from_uri,
        "from_tag": dlg.from_tag,
        "to_uri": dlg.to_uri,
        "to_tag": dlg.to_tag or "",
        "caller_cseq": dlg.caller_cseq,
        "callee_cseq": dlg.callee_cseq,
        "caller_route_set": ",".join(dlg.caller_route_set) or None,
        "callee_route_set": ",".join(dlg.callee_route_set) or None,
        "caller_contact": dlg.caller_contact,
        "callee_contact": dlg.callee_contact,
        "caller_sock": dlg.caller_sock,
        "callee_sock": dlg.callee_sock,
        "state": int(dlg.state),
        "start_time": round((dlg.start_time or dlg.created) + offset),
        "timeout": round((dlg.expires or 0.0) + offset),
        "lifetime": dlg.lifetime,
        "flags": dlg.flags,
        "vars": json.dumps(dict(dlg.vars), separators=(",", ":"), default=str) if dlg.vars else None,
        "profiles": json.dumps(sorted(dlg.profiles, key=lambda p: (p[0], p[1] or "")),
                               separators=(",", ":")) if dlg.profiles else None,
    }


def from_row(table: DialogTable, row: Mapping[Any, Any], offset: float,
             now: float) -> tuple[Dialog, list[tuple[str, str | None]]]:
    """A dialog (not yet in ``table``) and its profile memberships from a row.

    ``offset``: Unix time minus the table's clock; ``now``: the table's clock. A
    timeout already past becomes ``now``: the dialog expires at the next tick.
    """
    start = row["start_time"] - offset
    dlg = Dialog(
        table, row["dlg_id"], callid=row["callid"], from_uri=row["from_uri"],
        from_tag=row["from_tag"], to_uri=row["to_uri"], caller_cseq=int(row["caller_cseq"]),
        caller_contact=row["caller_contact"], caller_sock=row["caller_sock"] or "",
        lifetime=int(row["lifetime"]), flags=int(row["flags"] or 0), created=start,
    )
    dlg.to_tag = row["to_tag"] or None
    dlg.callee_cseq = int(row["callee_cseq"])
    dlg.callee_contact = row["callee_contact"]
    dlg.callee_sock = row["callee_sock"] or ""
    dlg.caller_route_set = tuple(split_comma(row["caller_route_set"] or "", allow_empty=True))
    dlg.callee_route_set = tuple(split_comma(row["callee_route_set"] or "", allow_empty=True))
    dlg.start_time = start
    dlg.expires = max(row["timeout"] - offset, now)
    if row["vars"]:
        try:
            loaded = json.loads(row["vars"])
        except ValueError:
            loaded = None
        if isinstance(loaded, dict):
            dict.update(dlg.vars, loaded)  # not DialogVars.update: nothing to write back
    profiles: list[tuple[str, str | None]] = []
    if row["profiles"]:
        try:
            pairs = json.loads(row["profiles"])
        except ValueError:
            pairs = []
        for pair in pairs if isinstance(pairs, list) else []:
            if isinstance(pair, list) and len(pair) == 2 and isinstance(pair[0], str):
                profiles.append((pair[0], None if pair[1] is None else str(pair[1])))
    return dlg, profiles


class DialogWriter(BatchWriter[Change]):
    """The ``dialog`` table's writer thread: the last change of each dialog wins."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        super().__init__("dialog table", "dialog-sql-writer")

    def write_batch(self, batch: list[Change]) -> None:
        latest: dict[str, dict[str, Any] | None] = {}
        for dlg_id, row in batch:
            latest[dlg_id] = row
        ids = list(latest)
        rows = [r for r in latest.values() if r is not None]
        with self.engine.begin() as conn:
            for i in range(0, len(ids), BATCH_ROWS):
                conn.execute(dialog_table.delete().where(
                    dialog_table.c.dlg_id.in_(ids[i:i + BATCH_ROWS])))
            for i in range(0, len(rows), BATCH_ROWS):
                conn.execute(dialog_table.insert(), rows[i:i + BATCH_ROWS])


class DialogStorage:
    """The table's :class:`~sipline_dialog.table.Store` for the SQL modes."""

    def __init__(self, engine: Engine, mode: str, table: DialogTable) -> None:
        if mode not in ("write-through", "write-back"):
            raise ValueError(f"unknown dialog db_mode {mode!r}")
        self.engine = engine
        self.table = table
        self.periodic = mode == "write-back"
        self._dirty: dict[str, Dialog | None] = {}
        self.writer = DialogWriter(engine)

    def _offset(self) -> float:
        return time.time() - self.table.clock()

    def load(self) -> int:
        """Load every stored dialog into the table (synchronously: at startup, before
        any message). Rows that are not confirmed dialogs are deleted."""
        from sqlalchemy import select

        with self.engine.begin() as conn:
            conn.execute(dialog_table.delete().where(
                dialog_table.c.state != int(DialogState.CONFIRMED)))
            rows = conn.execute(select(dialog_table)).mappings().all()
        offset = self._offset()
        now = self.table.clock()
        loaded = 0
        for row in rows:
            try:
                dlg, profiles = from_row(self.table, row, offset, now)
                self.table.restore(dlg, profiles)
            except Exception as exc:  # noqa: BLE001 - one bad row must not stop the server
                log.error("dialog table: row %r not loaded: %s", row.get("dlg_id"), exc)
                continue
            loaded += 1
        if loaded:
            log.info("dialog: %d dialog(s) loaded from the database", loaded)
        return loaded

    # -- Store ----------------------------------------------------------------------------
    def changed(self, dlg: Dialog) -> None:
        if self.periodic:
            self._dirty[dlg.id] = dlg
        else:
            self.writer.submit([(dlg.id, to_row(dlg, self._offset()))])

    def removed(self, dlg: Dialog) -> None:
        if self.periodic:
            self._dirty[dlg.id] = None
        else:
            self.writer.submit([(dlg.id, None)])

    # -- write-back -------------------------------------------------------------------------
    def flush(self) -> None:
        """Queue the changes collected since the last flush (write-back)."""
        if not self._dirty:
            return
        dirty, self._dirty = self._dirty, {}
        offset = self._offset()
        self.writer.submit([
            (dlg_id, to_row(dlg, offset) if dlg is not None and not dlg.ended else None)
            for dlg_id, dlg in dirty.items()
        ])

    def close(self) -> None:
        self.writer.close()
