"""Database access shared by plugins: the SQLAlchemy engine and the Alembic configuration.

One engine per process from ``[database] url`` (SQLite file in the data dir by default).
Migrations: the core's root revision lives in ``sipline.migrations``; each plugin adds the
folder of its own revisions through an entry point in the group ``sipline.migrations``
whose value is a module (the folder it lives in) or a ``module:attribute`` naming a path.
"""

from __future__ import annotations

import importlib
import os
from importlib.metadata import entry_points
from importlib.resources import files
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from alembic.config import Config as AlembicConfig
    from sqlalchemy.engine import Engine

    from sipline.config import Config

MIGRATIONS_GROUP = "sipline.migrations"


def migrations_dir() -> Path:
    """The installed Alembic environment (``env.py``, the core's ``versions/``)."""
    return Path(str(files("sipline.migrations")))


def plugin_version_locations() -> dict[str, Path]:
    """Plugin name -> folder of its Alembic revisions, from the entry points."""
    out: dict[str, Path] = {}
    for ep in entry_points(group=MIGRATIONS_GROUP):
        module_name, _, attr = ep.value.partition(":")
        module = importlib.import_module(module_name.strip())
        if attr:
            out[ep.name] = Path(getattr(module, attr.strip()))
        else:
            out[ep.name] = Path(module.__file__ or "").parent
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


def make_engine(url: str) -> Engine:
    """The process's SQLAlchemy engine for ``url``."""
    from sqlalchemy import create_engine

    return create_engine(url, future=True)


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
        if url.startswith("sqlite:///"):
            Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        engine = _engines[key] = make_engine(url)
    return engine
