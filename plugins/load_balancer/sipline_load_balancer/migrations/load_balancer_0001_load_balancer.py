"""load_balancer: the OpenSIPS-shaped load_balancer table

Revision ID: load_balancer_0001
Revises:
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "load_balancer_0001"
down_revision = None
branch_labels = ("load_balancer",)
depends_on = "core_root"


def upgrade() -> None:
    op.create_table(
        "load_balancer",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("group_id", sa.Integer(), server_default="0", nullable=False),
        sa.Column("dst_uri", sa.String(128), nullable=False),
        sa.Column("resources", sa.String(255), nullable=False),
        sa.Column("probe_mode", sa.Integer(), server_default="0", nullable=False),
        sa.Column("attrs", sa.String(255), nullable=True),
        sa.Column("description", sa.String(128), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("load_balancer_dsturi_idx", "load_balancer", ["dst_uri"])


def downgrade() -> None:
    op.drop_index("load_balancer_dsturi_idx", table_name="load_balancer")
    op.drop_table("load_balancer")
