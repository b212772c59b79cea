"""The core's root revision: every plugin branch depends on it.

Revision ID: core_root
Revises:
Create Date: 2026-11-26
"""

from __future__ import annotations

revision = "core_root"
down_revision = None
branch_labels = ("core",)
depends_on = None


def upgrade() -> None:
    # The core keeps no tables of its own yet; the revision anchors the plugin branches.
    pass


def downgrade() -> None:
    pass
