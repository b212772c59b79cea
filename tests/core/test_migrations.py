"""The Alembic environment: the core root revision upgrades and downgrades a real SQLite file."""

from __future__ import annotations

from sqlalchemy import create_engine, inspect, text

from sipline.db import alembic_config, migrations_dir, schema_status


def versions(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            if "alembic_version" not in inspect(conn).get_table_names():
                return set()
            return {row[0] for row in conn.execute(text("SELECT version_num FROM alembic_version"))}
    finally:
        engine.dispose()


def test_environment_is_installed_with_the_root_revision():
    here = migrations_dir()
    assert (here / "env.py").is_file()
    assert (here / "script.py.mako").is_file()
    assert (here / "versions" / "0001_core_root.py").is_file()


def test_upgrade_heads_and_downgrade_base_on_sqlite(tmp_path):
    from alembic import command
    from alembic.script import ScriptDirectory

    url = f"sqlite:///{tmp_path / 'sipline.db'}"
    cfg = alembic_config(url)
    script = ScriptDirectory.from_config(cfg)
    assert "core_root" in {r.revision for r in script.walk_revisions()}
    assert script.get_revision("core").revision == "core_root"  # the branch label
    command.upgrade(cfg, "heads")
    # alembic_version holds the heads only: a plugin branch that depends on the root
    # stands for it; the status walks the dependencies.
    assert versions(url) <= set(script.get_heads())
    assert schema_status(url).behind() == []
    command.downgrade(cfg, "base")
    assert versions(url) == set()
    command.upgrade(cfg, "heads")
    assert {b.name: b.current for b in schema_status(url).branches}["core"] == "core_root"
