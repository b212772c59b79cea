"""sipline.db: schema status, upgrade/downgrade/history and the startup check, on a real SQLite
file and a real PostgreSQL server, with whatever plugin branches are installed."""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from sipline import db
from sipline.config import build_config
from sipline.testing import free_port


def config_for(url: str | None = None, plugins: tuple[str, ...] = (), **database):
    data: dict = {"server": {"plugins": list(plugins)}, "database": dict(database)}
    if url is not None:
        data["database"]["url"] = url
    return build_config(data)


def a_plugin_with_tables() -> str:
    names = sorted(db.migration_plugins())
    if not names:
        pytest.skip("no installed plugin ships migrations")
    return names[0]


def test_status_upgrade_history_downgrade(database_url):
    before = db.schema_status(database_url)
    names = [b.name for b in before.branches]
    assert "core" in names
    assert set(db.migration_plugins()) <= set(names)  # one branch per plugin, named after it
    assert [b.current for b in before.branches] == [None] * len(names)
    assert before.behind() == list(before.branches)

    seen: list[str] = []
    steps = db.upgrade(database_url, on_step=seen.append)
    assert steps == seen
    assert steps[0].startswith("upgrade base -> core_root (")
    after = db.schema_status(database_url)
    assert after.behind() == []
    assert all(b.current == b.head for b in after.branches)
    assert db.upgrade(database_url) == []  # nothing left to do

    revisions, error = db.history(database_url)
    assert error is None
    assert revisions[0].revision == "core_root" and revisions[0].branch == "core"
    assert all(r.applied for r in revisions)
    assert {r.branch for r in revisions} == set(names)

    steps = db.downgrade(database_url, "base")
    assert steps[-1].startswith("downgrade core_root -> base")
    assert db.schema_status(database_url).behind() == list(db.schema_status(database_url).branches)


def test_unknown_revisions_are_reported_not_fatal(sqlite_url):
    db.upgrade(sqlite_url, "core@head")
    engine = create_engine(sqlite_url, poolclass=NullPool)
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO alembic_version (version_num) VALUES ('removed_0001')"))
    engine.dispose()
    status = db.schema_status(sqlite_url)
    assert status.unknown == ("removed_0001",)
    assert [b.name for b in status.branches if b.up_to_date] == ["core"]


def test_reading_the_status_creates_no_sqlite_file(tmp_path):
    path = tmp_path / "sub" / "none.db"
    status = db.schema_status(f"sqlite:///{path}")
    assert all(b.current is None for b in status.branches)
    assert not path.exists() and not path.parent.exists()


def test_unreachable_database_is_an_error_without_the_password():
    url = f"postgresql+psycopg://user:s3cret@127.0.0.1:{free_port()}/nothing"
    with pytest.raises(db.DatabaseError) as info:
        db.schema_status(url)
    message = str(info.value)
    assert "cannot read the schema of postgresql+psycopg://user:***@127.0.0.1" in message
    assert "s3cret" not in message
    with pytest.raises(db.DatabaseError):
        db.upgrade(url)
    revisions, error = db.history(url)  # the revisions are listed all the same
    assert revisions and all(r.applied is None for r in revisions) and error is not None


def test_bad_target_is_a_database_error(sqlite_url):
    with pytest.raises(db.DatabaseError, match="no_such_rev"):
        db.upgrade(sqlite_url, "no_such_rev")


@pytest.mark.parametrize(("url", "setting", "expected"), [
    (None, None, True),  # the embedded SQLite
    ("sqlite:////tmp/x.db", None, False),  # any explicit URL: the operator migrates
    ("sqlite:////tmp/x.db", True, True),
    (None, False, False),
])
def test_auto_upgrade_default(url, setting, expected):
    settings = {} if setting is None else {"auto_upgrade": setting}
    assert db.auto_upgrade(config_for(url, **settings)) is expected


def test_ensure_schema_reads_nothing_without_enabled_tables(tmp_path):
    config = build_config({"server": {"data_dir": str(tmp_path / "data")}})
    assert db.ensure_schema(config) == []
    assert not (tmp_path / "data").exists()


def test_ensure_schema_refuses_or_upgrades(database_url):
    name = a_plugin_with_tables()
    with pytest.raises(db.SchemaBehind) as info:
        db.ensure_schema(config_for(database_url, (name,)))
    assert [b.name for b in info.value.branches] == [name]
    assert str(info.value).startswith(f"database schema is behind: {name} (at nothing, head ")
    assert "run `sipline db upgrade`" in str(info.value)

    steps = db.ensure_schema(config_for(database_url, (name,), auto_upgrade=True))
    assert steps and steps[-1].startswith("upgrade ")
    assert db.schema_status(database_url).behind([name]) == []
    assert db.ensure_schema(config_for(database_url, (name,))) == []


def test_sqlite_engines_use_write_ahead_logging(sqlite_url):
    engine = db.make_engine(sqlite_url)
    try:
        with engine.connect() as conn:
            assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
            assert conn.execute(text("PRAGMA synchronous")).scalar() == 1  # NORMAL
    finally:
        engine.dispose()
