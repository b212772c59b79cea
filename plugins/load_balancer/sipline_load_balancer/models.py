"""The ``load_balancer`` table: OpenSIPS load_balancer's columns, so an operator recognises it.

``resources`` is ``name=capacity`` pairs separated by ``;`` (``pstn=32;transc=8``);
``probe_mode`` is 0 (never probe), 1 (probe only while disabled) or 2 (always probe);
``attrs`` is free text handed to routing scripts. The table is read at startup and by
``lb_reload``; calls never wait for it.
"""

from __future__ import annotations

from typing import cast

from sqlalchemy import Index, Integer, String, Table
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    """The load balancer's tables (its Alembic branch ``load_balancer`` creates them)."""


class LoadBalancerRow(Base):
    """One destination (OpenSIPS ``load_balancer``)."""

    __tablename__ = "load_balancer"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    group_id: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    dst_uri: Mapped[str] = mapped_column(String(128))
    resources: Mapped[str] = mapped_column(String(255))
    probe_mode: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    attrs: Mapped[str | None] = mapped_column(String(255))
    description: Mapped[str | None] = mapped_column(String(128))

    __table_args__ = (Index("load_balancer_dsturi_idx", "dst_uri"),)


#: The table itself, for Core statements.
load_balancer = cast(Table, LoadBalancerRow.__table__)
