"""The ``location`` table: OpenSIPS usrloc's column names, so an operator recognises it.

Types are adapted where OpenSIPS's would lose data or break on PostgreSQL:

- ``expires`` is an absolute Unix time in whole seconds (BIGINT: no 2038 limit);
- values copied from the wire that have no length limit (contact, callid, path,
  user_agent, sip_instance) are TEXT rather than VARCHAR(255);
- ``q`` is NULL when the Contact carried no q-value (OpenSIPS stores -1 there);
- ``contact_id`` is a 63-bit hash of AOR and contact, computed by the plugin, so a
  binding keeps its row id across restarts and updates address it directly;
- ``methods`` is OpenSIPS's method bitmask of the REGISTER's Allow (NULL: all);
- ``cflags`` holds the binding's branch flag names, comma separated;
- ``kv_store`` is a JSON object for what has no column (``reg_id``, ``created``).
"""

from __future__ import annotations

from datetime import datetime
from typing import cast

from sqlalchemy import BigInteger, DateTime, Float, Index, Integer, String, Table, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    """The registrar's tables (its Alembic branch ``registrar`` creates them)."""


class Location(Base):
    """One binding of an address-of-record to a contact (OpenSIPS ``location``)."""

    __tablename__ = "location"

    contact_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    username: Mapped[str] = mapped_column(String(255), default="")
    domain: Mapped[str | None] = mapped_column(String(255))
    contact: Mapped[str] = mapped_column(Text)
    received: Mapped[str | None] = mapped_column(String(255))
    path: Mapped[str | None] = mapped_column(Text)
    expires: Mapped[int] = mapped_column(BigInteger)
    q: Mapped[float | None] = mapped_column(Float)
    callid: Mapped[str] = mapped_column(Text)
    cseq: Mapped[int] = mapped_column(Integer)
    last_modified: Mapped[datetime] = mapped_column(DateTime)
    flags: Mapped[int] = mapped_column(Integer, default=0)
    cflags: Mapped[str | None] = mapped_column(String(255))
    user_agent: Mapped[str] = mapped_column(Text, default="")
    socket: Mapped[str | None] = mapped_column(String(64))
    methods: Mapped[int | None] = mapped_column(Integer)
    sip_instance: Mapped[str | None] = mapped_column(Text)
    kv_store: Mapped[str | None] = mapped_column(Text)
    attr: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (
        Index("location_account_idx", "username", "domain"),
        Index("location_expires_idx", "expires"),
    )


#: The table itself, for Core statements (the storage never builds ORM objects).
location = cast(Table, Location.__table__)
