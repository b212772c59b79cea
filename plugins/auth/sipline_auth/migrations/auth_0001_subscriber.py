"""auth: the OpenSIPS subscriber table.

Revision ID: auth_0001
Revises:
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "auth_0001"
down_revision = None
branch_labels = ("auth",)
depends_on = "core_root"


def upgrade() -> None:
    op.create_table(
        "subscriber",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("username", sa.String(64), nullable=False, server_default=""),
        sa.Column("domain", sa.String(64), nullable=False, server_default=""),
        sa.Column("password", sa.String(64), nullable=False, server_default=""),
        sa.Column("email_address", sa.String(128), nullable=False, server_default=""),
        sa.Column("ha1", sa.String(64), nullable=False, server_default=""),
        sa.Column("ha1_sha256", sa.String(64), nullable=False, server_default=""),
        sa.Column("ha1_sha512t256", sa.String(64), nullable=False, server_default=""),
        sa.UniqueConstraint("username", "domain", name="account_idx"),
    )
    op.create_index("username_idx", "subscriber", ["username"])


def downgrade() -> None:
    op.drop_index("username_idx", table_name="subscriber")
    op.drop_table("subscriber")
