"""Alembic environment: runs the migrations of the core and of every installed plugin.

The database URL and the version locations are set by :func:`sipline.db.alembic_config`;
this file only opens the connection and runs the migrations in it. Callers may put an
``on_version_apply`` callback in ``config.attributes`` to be told about every step.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, pool

config = context.config
on_version_apply = config.attributes.get("on_version_apply")
options = {"on_version_apply": on_version_apply} if on_version_apply else {}


def run_offline() -> None:
    context.configure(url=config.get_main_option("sqlalchemy.url"), literal_binds=True, **options)
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        context.configure(connection=connection, **options)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = create_engine(config.get_main_option("sqlalchemy.url"), poolclass=pool.NullPool)
    with engine.connect() as connection:
        context.configure(connection=connection, **options)
        with context.begin_transaction():
            context.run_migrations()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
