"""Templates (versioned), tracked links and provider accounts."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from dispatcher.storage.base import Base, BigId, Money, WorkspaceOwned, utcnow

_LIVE = sa.text("deleted_at IS NULL")


class Template(WorkspaceOwned, Base):
    """Names are unique among a workspace's live templates: a deleted one frees its name for reuse."""

    __tablename__ = "templates"
    __table_args__ = (
        sa.Index(
            "uq_templates_live_name",
            "workspace_id",
            "name",
            unique=True,
            postgresql_where=_LIVE,
            sqlite_where=_LIVE,
        ),
    )

    name: Mapped[str] = mapped_column(sa.String(200))
    channel: Mapped[str] = mapped_column(sa.String(16))
    current_version: Mapped[int] = mapped_column(default=1)
    builtin: Mapped[bool] = mapped_column(default=False)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    deleted_at: Mapped[datetime | None]


class TemplateVersion(WorkspaceOwned, Base):
    """Immutable: a running campaign keeps the version it started with."""

    __tablename__ = "template_versions"
    __table_args__ = (sa.UniqueConstraint("template_id", "version"),)

    template_id: Mapped[int] = mapped_column(BigId, sa.ForeignKey("templates.id", ondelete="CASCADE"))
    version: Mapped[int]
    body: Mapped[str | None] = mapped_column(sa.Text)  # SMS text
    subject: Mapped[str | None] = mapped_column(sa.Text)
    text_body: Mapped[str | None] = mapped_column(sa.Text)
    html_body: Mapped[str | None] = mapped_column(sa.Text)


class TrackedLink(WorkspaceOwned, Base):
    """Only URLs that came from a template are ever redirected to: no open redirect."""

    __tablename__ = "tracked_links"

    code: Mapped[str] = mapped_column(sa.String(32), unique=True)
    campaign_id: Mapped[int | None] = mapped_column(BigId, sa.ForeignKey("campaigns.id", ondelete="CASCADE"))
    url: Mapped[str] = mapped_column(sa.Text)


class Provider(WorkspaceOwned, Base):
    __tablename__ = "providers"
    __table_args__ = (sa.UniqueConstraint("workspace_id", "name"),)

    name: Mapped[str] = mapped_column(sa.String(100))
    channel: Mapped[str] = mapped_column(sa.String(16))
    kind: Mapped[str] = mapped_column(sa.String(32))  # twilio_http | smtp | smpp
    config: Mapped[dict[str, Any]] = mapped_column(default=dict)
    price_per_segment: Mapped[Decimal] = mapped_column(Money, default=Decimal(0))
    rate_limit_per_s: Mapped[float | None]
    priority: Mapped[int] = mapped_column(default=100)
    enabled: Mapped[bool] = mapped_column(default=True)
