"""Workspaces, API keys, idempotent POST replies and worker heartbeats."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from dispatcher.storage.base import Base, BigId, WorkspaceOwned, utcnow


class Workspace(Base):
    __tablename__ = "workspaces"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    slug: Mapped[str] = mapped_column(sa.String(64), unique=True)
    name: Mapped[str] = mapped_column(sa.String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ApiKey(WorkspaceOwned, Base):
    """Only a SHA-256 of the key is stored; ``prefix`` finds the row without scanning."""

    __tablename__ = "api_keys"

    name: Mapped[str] = mapped_column(sa.String(200))
    prefix: Mapped[str] = mapped_column(sa.String(16), unique=True)
    key_hash: Mapped[str] = mapped_column(sa.String(64))
    scopes: Mapped[list[str]]
    last_used_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]


class IdempotentRequest(WorkspaceOwned, Base):
    """The stored reply to a POST sent with an ``Idempotency-Key``: a retry gets the same answer."""

    __tablename__ = "idempotent_requests"
    __table_args__ = (sa.UniqueConstraint("workspace_id", "key"),)

    key: Mapped[str] = mapped_column(sa.String(200))
    fingerprint: Mapped[str] = mapped_column(sa.String(64))
    status: Mapped[int]
    body: Mapped[dict[str, Any]]


class WorkerHeartbeat(Base):
    """Operators see which workers are alive; ``/readyz`` reports them."""

    __tablename__ = "worker_heartbeats"

    worker_id: Mapped[str] = mapped_column(sa.String(100), primary_key=True)
    host: Mapped[str] = mapped_column(sa.String(200))
    pid: Mapped[int]
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(default=utcnow)
    jobs_done: Mapped[int] = mapped_column(default=0)
