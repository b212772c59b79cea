"""``sipline db`` and the startup schema check, as real subprocesses, with a throwaway plugin
distribution that ships an Alembic branch (installed by pip, found through the
``sipline.migrations`` entry point: an installed wheel carries its migrations)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from sipline.testing import ServerProcess, SipClient, free_port, options_request, table_names

PYPROJECT = """
[build-system]
requires = ["setuptools>=69"]
build-backend = "setuptools.build_meta"

[project]
name = "sipline-demo"
version = "0.0.1"
dependencies = []

[project.entry-points.sipline]
demo = "sipline_demo.plugin"

[project.entry-points."sipline.migrations"]
demo = "sipline_demo.migrations"

[tool.setuptools]
packages = ["sipline_demo", "sipline_demo.migrations"]
"""

PLUGIN = '''
"""A plugin with one table and no hooks."""
'''

REVISION = '''
"""demo: items

Revision ID: demo_0001
Revises:
"""
import sqlalchemy as sa
from alembic import op

revision = "demo_0001"
down_revision = None
branch_labels = ("demo",)
depends_on = "core_root"


def upgrade():
    op.create_table("demo_item", sa.Column("id", sa.Integer, primary_key=True))


def downgrade():
    op.drop_table("demo_item")
'''


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    src = tmp_path_factory.mktemp("demo-src")
    (src / "pyproject.toml").write_text(PYPROJECT)
    pkg = src / "sipline_demo"
    (pkg / "migrations").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "plugin.py").write_text(textwrap.dedent(PLUGIN))
    (pkg / "migrations" / "__init__.py").write_text("")
    (pkg / "migrations" / "0001_items.py").write_text(textwrap.dedent(REVISION))
    target = tmp_path_factory.mktemp("site")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--no-index", "--target", str(target), str(src)],
        check=True, capture_output=True, timeout=300,
    )
    assert (target / "sipline_demo" / "migrations" / "0001_items.py").is_file()
    return target


def env_with(site: Path, data_dir: Path) -> dict[str, str]:
    path = os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH", "")]))
    return {**os.environ, "PYTHONPATH": path, "SIPLINE_DATA_DIR": str(data_dir)}


class Cli:
    def __init__(self, site: Path, tmp_path: Path, config: str) -> None:
        self.config = tmp_path / "sipline.toml"
        self.config.write_text(config)
        self.env = env_with(site, tmp_path / "data")

    def __call__(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "sipline", "db", *args, "-c", str(self.config)],
            capture_output=True, text=True, env=self.env, timeout=60,
        )


def test_db_commands(site, tmp_path, sqlite_url):
    # SQLite only: the same commands on PostgreSQL run in the registrar's restart tests,
    # and sipline.db itself is tested on both (test_db.py).
    database_url = sqlite_url
    db = Cli(site, tmp_path, f'[database]\nurl = "{database_url}"\n')
    out = db("current")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == f"{database_url}:"
    assert any(line.split()[:3] == ["demo", "-", "behind"] for line in lines)
    out = db("history")
    assert out.returncode == 0, out.stderr
    assert ["demo_0001", "demo", "pending", "demo:", "items"] in [x.split() for x in out.stdout.splitlines()]

    out = db("upgrade")
    assert out.returncode == 0, out.stderr
    assert "upgrade core_root -> demo_0001 (demo: items)" in out.stdout
    assert "step(s) applied" in out.stdout
    assert ["demo", "demo_0001", "head"] in [x.split() for x in out.stdout.splitlines()]
    assert "demo_item" in table_names(database_url)
    again = db("upgrade")
    assert again.returncode == 0 and f"{database_url}: no change" in again.stdout

    out = db("downgrade", "demo@base")
    assert out.returncode == 0, out.stderr
    assert "downgrade demo_0001 -> core_root (demo: items)" in out.stdout
    assert "demo_item" not in table_names(database_url)
    assert ["demo", "-", "behind", "(head", "demo_0001)"] in [x.split() for x in out.stdout.splitlines()]

    bad = db("downgrade", "no_such_rev")
    assert bad.returncode == 4
    assert bad.stderr.startswith("error: downgrade 'no_such_rev' on ")


def test_db_errors_and_help(site, tmp_path):
    url = f"postgresql+psycopg://user:s3cret@127.0.0.1:{free_port()}/x"
    db = Cli(site, tmp_path, f'[database]\nurl = "{url}"\n')
    out = db("current")
    assert out.returncode == 4
    assert "error: cannot read the schema of postgresql+psycopg://user:***@" in out.stderr
    assert "s3cret" not in out.stderr + out.stdout
    out = db("history")  # lists the installed revisions without the database
    assert out.returncode == 0 and "demo_0001" in out.stdout and "warning:" in out.stderr
    assert db("upgrade").returncode == 4

    (tmp_path / "bad").mkdir()
    out = Cli(site, tmp_path / "bad", "[database]\nurl = 5\n")("current")
    assert out.returncode == 1 and "[database] url" in out.stderr

    out = subprocess.run([sys.executable, "-m", "sipline", "db", "--help"], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0 and "4 database error" in out.stdout
    assert all(action in out.stdout for action in ("upgrade", "downgrade", "current", "history"))
    out = subprocess.run([sys.executable, "-m", "sipline", "db", "downgrade"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2  # REV is required


def server_config(port: int, database: str = "") -> str:
    return f'[server]\nlisten = ["udp:127.0.0.1:{port}"]\nplugins = ["demo"]\n{database}'


def test_run_refuses_a_schema_that_is_behind(site, tmp_path, sqlite_url):
    port = free_port()
    proc = ServerProcess(server_config(port, f'[database]\nurl = "{sqlite_url}"\n'), tmp_path,
                         env=env_with(site, tmp_path / "data")).start()
    assert proc.proc is not None and proc.proc.wait(30) == 4
    log = proc.log()
    assert "database schema is behind: demo (at nothing, head demo_0001)" in log
    assert f"run `sipline db upgrade -c {tmp_path / 'sipline.toml'}`" in log
    proc.stop()


def answers(port: int) -> bool:
    c = SipClient(("127.0.0.1", port))
    try:
        return c.request(options_request(f"127.0.0.1:{port}", local=c.local_hostport)).status == 200
    finally:
        c.close()


def test_run_auto_upgrades_the_embedded_sqlite(site, tmp_path):
    port = free_port()
    proc = ServerProcess(server_config(port), tmp_path, env=env_with(site, tmp_path / "data"))
    proc.start(probe=("127.0.0.1", port))
    try:
        assert answers(port)
        assert "database auto_upgrade: upgrade core_root -> demo_0001" in proc.log()
        assert "demo_item" in table_names(f"sqlite:///{tmp_path / 'data' / 'sipline.db'}")
    finally:
        assert proc.stop() == 0, proc.log()


def test_run_auto_upgrades_when_configured(site, tmp_path, postgresql_url):
    port = free_port()
    database = f'[database]\nurl = "{postgresql_url}"\nauto_upgrade = true\n'
    proc = ServerProcess(server_config(port, database), tmp_path,
                         env=env_with(site, tmp_path / "data"))
    proc.start(probe=("127.0.0.1", port))
    try:
        assert "demo_item" in table_names(postgresql_url)
    finally:
        assert proc.stop() == 0, proc.log()


def test_run_without_tables_touches_no_database(tmp_path):
    port = free_port()
    proc = ServerProcess(f'[server]\nlisten = ["udp:127.0.0.1:{port}"]\n', tmp_path)
    proc.start(probe=("127.0.0.1", port))
    try:
        assert not (tmp_path / "data" / "sipline.db").exists()
    finally:
        assert proc.stop() == 0, proc.log()
