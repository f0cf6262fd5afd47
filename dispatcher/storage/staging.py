"""Upload bytes and staged rows of an import: written while it runs, published in one transaction.

Nothing here is visible as a contact until the publish step moves it, so a crash or a fatal error mid-way
leaves no half list; a re-run deletes what an earlier attempt staged and starts over.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from dispatcher.storage.base import Base, BigId, JsonDoc


class ImportChunk(Base):
    """The raw upload, kept in the database so any worker on any machine can process it."""

    __tablename__ = "import_chunks"

    import_id: Mapped[int] = mapped_column(
        BigId, sa.ForeignKey("imports.id", ondelete="CASCADE"), primary_key=True
    )
    seq: Mapped[int] = mapped_column(primary_key=True)
    data: Mapped[bytes] = mapped_column(sa.LargeBinary)


class StagedContact(Base):
    __tablename__ = "import_rows"

    import_id: Mapped[int] = mapped_column(
        BigId, sa.ForeignKey("imports.id", ondelete="CASCADE"), primary_key=True
    )
    row_number: Mapped[int] = mapped_column(primary_key=True)
    dedupe_key: Mapped[str] = mapped_column(sa.String(320))
    phone: Mapped[str | None] = mapped_column(sa.String(20))
    phone_type: Mapped[str | None] = mapped_column(sa.String(32))
    phone_region: Mapped[str | None] = mapped_column(sa.String(2))
    time_zones: Mapped[list[str]] = mapped_column(JsonDoc, default=list)
    sms_capable: Mapped[bool] = mapped_column(default=False)
    email: Mapped[str | None] = mapped_column(sa.String(320))
    first_name: Mapped[str | None] = mapped_column(sa.String(200))
    last_name: Mapped[str | None] = mapped_column(sa.String(200))
    timezone: Mapped[str | None] = mapped_column(sa.String(64))
    attributes: Mapped[dict[str, Any]] = mapped_column(JsonDoc, default=dict)
