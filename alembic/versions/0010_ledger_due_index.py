"""ledger index for claiming due rows: planned rows of a campaign in (not_before, id) order

Without it every claim sorted what was left of the campaign (100,000 rows: a seq scan and an on-disk sort
per 5,000 claimed); with it a claim reads the index in order and stops at its limit. Partial on
``state = 'planned'``: rows leave it when claimed, so the later state changes never touch it.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-23
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_PLANNED = sa.text("state = 'planned'")


def upgrade() -> None:
    op.create_index(
        "ix_messages_due",
        "messages",
        ["campaign_id", "not_before", "id"],
        postgresql_where=_PLANNED,
        sqlite_where=_PLANNED,
    )


def downgrade() -> None:
    op.drop_index("ix_messages_due", table_name="messages")
