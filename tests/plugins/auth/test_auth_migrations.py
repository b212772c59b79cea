"""The auth branch: upgrade, no difference with the models, downgrade the branch, upgrade again."""

from __future__ import annotations

from sipline.db import plugin_version_locations
from sipline.testing import migration_round_trip
from sipline_auth.models import Base


def test_entry_point_names_the_revisions_folder():
    folder = plugin_version_locations()["auth"]
    assert (folder / "auth_0001_subscriber.py").is_file()


def test_migration_round_trip(database_url):
    migration_round_trip(database_url, "auth", Base.metadata, tables={"subscriber"})
