"""dialog: the OpenSIPS-shaped dialog table

Revision ID: dialog_0001
Revises:
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "dialog_0001"
down_revision = None
branch_labels = ("dialog",)
depends_on = "core_root"


def upgrade() -> None:
    op.create_table(
        "dialog",
        sa.Column("dlg_id", sa.String(64), nullable=False),
        sa.Column("callid", sa.Text(), nullable=False),
        sa.Column("from_uri", sa.Text(), nullable=False),
        sa.Column("from_tag", sa.String(128), nullable=False),
        sa.Column("to_uri", sa.Text(), nullable=False),
        sa.Column("to_tag", sa.String(128), nullable=False),
        sa.Column("caller_cseq", sa.BigInteger(), nullable=False),
        sa.Column("callee_cseq", sa.BigInteger(), nullable=False),
        sa.Column("caller_route_set", sa.Text(), nullable=True),
        sa.Column("callee_route_set", sa.Text(), nullable=True),
        sa.Column("caller_contact", sa.Text(), nullable=False),
        sa.Column("callee_contact", sa.Text(), nullable=False),
        sa.Column("caller_sock", sa.String(128), nullable=False),
        sa.Column("callee_sock", sa.String(128), nullable=False),
        sa.Column("state", sa.Integer(), nullable=False),
        sa.Column("start_time", sa.BigInteger(), nullable=False),
        sa.Column("timeout", sa.BigInteger(), nullable=False),
        sa.Column("lifetime", sa.Integer(), nullable=False),
        sa.Column("flags", sa.Integer(), nullable=False),
        sa.Column("vars", sa.Text(), nullable=True),
        sa.Column("profiles", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("dlg_id"),
    )


def downgrade() -> None:
    op.drop_table("dialog")
