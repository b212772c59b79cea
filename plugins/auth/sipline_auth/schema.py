"""The auth plugin's schema (Alembic branch ``auth``): check it, upgrade it when allowed.

``sipline run`` already upgrades (or refuses) before serving; this is for what
runs without it: ``sipline user ...`` on a fresh database, and servers started
in-process. Both follow ``[database] auto_upgrade`` (unset: true for the
embedded SQLite only) through :mod:`sipline.db`.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from sipline import db
from sqlalchemy import inspect

if TYPE_CHECKING:
    from sipline.config import Config
    from sqlalchemy.engine import Engine

log = logging.getLogger("sipline.auth")

BRANCH = "auth"
TABLE = "subscriber"

SchemaError = db.DatabaseError


def ensure_schema(config: Config, engine: Engine) -> list[str]:
    """Make sure the subscriber table is current; the migration steps applied, if any.

    A ``subscriber`` table that Alembic never recorded (an OpenSIPS database
    shared with sipline) is used as it is.

    :raises sipline.db.DatabaseError: the database cannot be read or migrated, or
        the schema is behind and ``auto_upgrade`` is off (the message says what to run).
    """
    url = config.database_url
    behind = db.schema_status(url).behind([BRANCH])
    if not behind:
        return []
    if behind[0].current is None and _has_table(engine):
        log.info("using the existing %s table, which Alembic does not manage", TABLE)
        return []
    if not db.auto_upgrade(config):
        command = "sipline db upgrade" + (f" -c {config.source}" if config.source else "")
        raise db.SchemaBehind(
            f"database {db.display_url(url)} lacks the auth plugin's schema (table "
            f"{TABLE!r}, branch {BRANCH!r} at {behind[0].current or 'nothing'}, head "
            f"{behind[0].head}): run `{command}` (or set [database] auto_upgrade = true)",
            behind,
        )
    steps = db.upgrade(url, f"{BRANCH}@head")
    for step in steps:
        log.info("auth schema: %s", step)
    return steps


def _has_table(engine: Engine) -> bool:
    with engine.connect() as conn:
        return TABLE in inspect(conn).get_table_names()
