"""registrar: the OpenSIPS usrloc location table

Revision ID: registrar_0001
Revises:
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "registrar_0001"
down_revision = None
branch_labels = ("registrar",)
depends_on = "core_root"


def upgrade() -> None:
    op.create_table(
        "location",
        sa.Column("contact_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("username", sa.String(255), nullable=False),
        sa.Column("domain", sa.String(255), nullable=True),
        sa.Column("contact", sa.Text(), nullable=False),
        sa.Column("received", sa.String(255), nullable=True),
        sa.Column("path", sa.Text(), nullable=True),
        sa.Column("expires", sa.BigInteger(), nullable=False),
        sa.Column("q", sa.Float(), nullable=True),
        sa.Column("callid", sa.Text(), nullable=False),
        sa.Column("cseq", sa.Integer(), nullable=False),
        sa.Column("last_modified", sa.DateTime(), nullable=False),
        sa.Column("flags", sa.Integer(), nullable=False),
        sa.Column("cflags", sa.String(255), nullable=True),
        sa.Column("user_agent", sa.Text(), nullable=False),
        sa.Column("socket", sa.String(64), nullable=True),
        sa.Column("methods", sa.Integer(), nullable=True),
        sa.Column("sip_instance", sa.Text(), nullable=True),
        sa.Column("kv_store", sa.Text(), nullable=True),
        sa.Column("attr", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("contact_id"),
    )
    op.create_index("location_account_idx", "location", ["username", "domain"])
    op.create_index("location_expires_idx", "location", ["expires"])


def downgrade() -> None:
    op.drop_index("location_expires_idx", table_name="location")
    op.drop_index("location_account_idx", table_name="location")
    op.drop_table("location")
