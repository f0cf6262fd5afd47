"""Contact lists, contacts, consent, suppressions, segments and imports."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from dispatcher.storage.base import Base, BigId, WorkspaceOwned, utcnow


class ContactList(WorkspaceOwned, Base):
    __tablename__ = "contact_lists"

    name: Mapped[str] = mapped_column(sa.String(200))
    description: Mapped[str] = mapped_column(sa.Text, default="")
    default_region: Mapped[str | None] = mapped_column(sa.String(2))
    default_timezone: Mapped[str | None] = mapped_column(sa.String(64))
    contact_count: Mapped[int] = mapped_column(default=0)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


#: A cleaned contact's columns, in the order the cleaner's row tuples carry them (both import loads).
CLEANED_FIELDS = (
    "dedupe_key",
    "phone",
    "phone_type",
    "phone_region",
    "time_zones",
    "sms_capable",
    "email",
    "first_name",
    "last_name",
    "timezone",
    "attributes",
)


class Contact(WorkspaceOwned, Base):
    """One person on one list. ``dedupe_key`` is the E.164 phone, else the normalised e-mail."""

    __tablename__ = "contacts"
    __table_args__ = (sa.UniqueConstraint("list_id", "dedupe_key"),)

    # No key or index of its own (migration 0015): the list's key cascades from the workspace, and no query
    # reaches contacts by workspace alone (nor by phone or e-mail, which lost their indexes too).
    workspace_id: Mapped[int] = mapped_column(BigId)
    list_id: Mapped[int] = mapped_column(BigId, sa.ForeignKey("contact_lists.id", ondelete="CASCADE"))
    dedupe_key: Mapped[str] = mapped_column(sa.String(320))
    phone: Mapped[str | None] = mapped_column(sa.String(20))
    phone_type: Mapped[str | None] = mapped_column(sa.String(32))
    phone_region: Mapped[str | None] = mapped_column(sa.String(2))
    time_zones: Mapped[list[str]] = mapped_column(default=list)
    sms_capable: Mapped[bool] = mapped_column(default=False)
    email: Mapped[str | None] = mapped_column(sa.String(320))
    first_name: Mapped[str | None] = mapped_column(sa.String(200))
    last_name: Mapped[str | None] = mapped_column(sa.String(200))
    timezone: Mapped[str | None] = mapped_column(sa.String(64))
    attributes: Mapped[dict[str, Any]] = mapped_column(default=dict)
    import_id: Mapped[int | None] = mapped_column(BigId)
    erased_at: Mapped[datetime | None]


class ConsentRecord(WorkspaceOwned, Base):
    """Append-only: consent is never edited, a withdrawal is a new row."""

    __tablename__ = "consent_records"

    address: Mapped[str] = mapped_column(sa.String(320), index=True)
    channel: Mapped[str] = mapped_column(sa.String(16))
    granted: Mapped[bool]
    source: Mapped[str] = mapped_column(sa.String(200))
    import_id: Mapped[int | None] = mapped_column(BigId)


class Suppression(WorkspaceOwned, Base):
    """Checked at import and again at send time; a re-import never removes one."""

    __tablename__ = "suppressions"
    __table_args__ = (sa.UniqueConstraint("workspace_id", "channel", "address"),)

    channel: Mapped[str] = mapped_column(sa.String(16))  # sms | email | all
    address: Mapped[str] = mapped_column(sa.String(320))
    reason: Mapped[str] = mapped_column(
        sa.String(32)
    )  # unsubscribe | stop | hard_bounce | complaint | manual
    source: Mapped[str] = mapped_column(sa.String(200), default="")


class Segment(WorkspaceOwned, Base):
    __tablename__ = "segments"

    list_id: Mapped[int] = mapped_column(BigId, sa.ForeignKey("contact_lists.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(sa.String(200))
    filter: Mapped[dict[str, Any]] = mapped_column(default=dict)


class ContactImport(WorkspaceOwned, Base):
    """One upload. Rows are staged and published in one transaction: never a half list."""

    __tablename__ = "imports"

    list_id: Mapped[int] = mapped_column(BigId, sa.ForeignKey("contact_lists.id", ondelete="CASCADE"))
    state: Mapped[str] = mapped_column(sa.String(16), default="receiving")  # → queued → running → done
    dry_run: Mapped[bool] = mapped_column(default=False)
    default_region: Mapped[str | None] = mapped_column(sa.String(2))
    consent_source: Mapped[str | None] = mapped_column(sa.String(200))
    filename: Mapped[str | None] = mapped_column(sa.String(300))
    bytes_total: Mapped[int | None] = mapped_column(sa.BigInteger)
    bytes_done: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    rows_done: Mapped[int] = mapped_column(default=0)
    accepted: Mapped[int] = mapped_column(default=0)
    rejected: Mapped[int] = mapped_column(default=0)
    duplicate: Mapped[int] = mapped_column(default=0)
    suppressed: Mapped[int] = mapped_column(default=0)
    reasons: Mapped[dict[str, Any]] = mapped_column(default=dict)
    error: Mapped[str | None] = mapped_column(sa.Text)
    options: Mapped[dict[str, Any]] = mapped_column(default=dict)  # channels, check_deliverability
    columns: Mapped[list[str]] = mapped_column(default=list)  # the file's header, for the rejects download
    attempts: Mapped[int] = mapped_column(default=0)  # a job whose attempt is not the latest gives way
    heartbeat_at: Mapped[datetime | None]  # the running job's sign of life; the sweeper re-queues stale ones
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]


class ImportReject(Base):
    __tablename__ = "import_rejects"
    __table_args__ = (sa.Index("ix_import_rejects_import_row", "import_id", "row_number"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    import_id: Mapped[int] = mapped_column(BigId, sa.ForeignKey("imports.id", ondelete="CASCADE"))
    row_number: Mapped[int]
    reason: Mapped[str] = mapped_column(sa.String(32))
    values: Mapped[dict[str, Any]]
