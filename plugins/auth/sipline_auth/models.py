"""The OpenSIPS ``subscriber`` table (auth_db), as a SQLAlchemy 2.x model.

Column names and defaults follow OpenSIPS 3.x so that an operator recognises the
table: ``ha1`` is MD5, ``ha1_sha256`` SHA-256, ``ha1_sha512t256`` SHA-512-256,
each ``H(username:realm:password)``. ``password`` is '' unless the plaintext is kept.
"""

from __future__ import annotations

from typing import cast

from sqlalchemy import Index, Integer, MetaData, String, Table, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    metadata = MetaData()


class Subscriber(Base):
    __tablename__ = "subscriber"
    __table_args__ = (
        UniqueConstraint("username", "domain", name="account_idx"),
        Index("username_idx", "username"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    username: Mapped[str] = mapped_column(String(64), nullable=False, server_default="")
    domain: Mapped[str] = mapped_column(String(64), nullable=False, server_default="")
    password: Mapped[str] = mapped_column(String(64), nullable=False, server_default="")
    email_address: Mapped[str] = mapped_column(String(128), nullable=False, server_default="")
    ha1: Mapped[str] = mapped_column(String(64), nullable=False, server_default="")
    ha1_sha256: Mapped[str] = mapped_column(String(64), nullable=False, server_default="")
    ha1_sha512t256: Mapped[str] = mapped_column(String(64), nullable=False, server_default="")


subscriber = cast(Table, Subscriber.__table__)
