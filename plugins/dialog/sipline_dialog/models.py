"""The ``dialog`` table: OpenSIPS dialog's column names, so an operator recognises it.

Only confirmed dialogs are stored (an early dialog is seconds old and needs its
transaction, which does not survive a restart either). Differences from OpenSIPS:

- ``dlg_id`` is the text of the ``did`` Record-Route cookie (OpenSIPS: a number
  made of its hash entry and id);
- ``start_time`` and ``timeout`` are Unix times in whole seconds (BIGINT);
  ``lifetime`` (not in OpenSIPS) is the timeout in seconds that a re-INVITE restarts;
- route sets are comma-separated Record-Route values, nearest hop first;
- ``vars`` is a JSON object, ``profiles`` a JSON array of ``[name, value]`` pairs
  (value null for a profile without values);
- ``flags`` bit 1: send BYE to both sides on expiry.
"""

from __future__ import annotations

from typing import cast

from sqlalchemy import BigInteger, Integer, String, Table, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    """The dialog plugin's tables (its Alembic branch ``dialog`` creates them)."""


class DialogRow(Base):
    """One confirmed dialog (OpenSIPS ``dialog``)."""

    __tablename__ = "dialog"

    dlg_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    callid: Mapped[str] = mapped_column(Text)
    from_uri: Mapped[str] = mapped_column(Text)
    from_tag: Mapped[str] = mapped_column(String(128))
    to_uri: Mapped[str] = mapped_column(Text)
    to_tag: Mapped[str] = mapped_column(String(128))
    caller_cseq: Mapped[int] = mapped_column(BigInteger)
    callee_cseq: Mapped[int] = mapped_column(BigInteger)
    caller_route_set: Mapped[str | None] = mapped_column(Text)
    callee_route_set: Mapped[str | None] = mapped_column(Text)
    caller_contact: Mapped[str] = mapped_column(Text)
    callee_contact: Mapped[str] = mapped_column(Text)
    caller_sock: Mapped[str] = mapped_column(String(128))
    callee_sock: Mapped[str] = mapped_column(String(128))
    state: Mapped[int] = mapped_column(Integer)
    start_time: Mapped[int] = mapped_column(BigInteger)
    timeout: Mapped[int] = mapped_column(BigInteger)
    lifetime: Mapped[int] = mapped_column(Integer)
    flags: Mapped[int] = mapped_column(Integer, default=0)
    vars: Mapped[str | None] = mapped_column(Text)
    profiles: Mapped[str | None] = mapped_column(Text)


#: The table itself, for Core statements (the storage never builds ORM objects).
dialog = cast(Table, DialogRow.__table__)
