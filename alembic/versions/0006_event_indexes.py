"""event indexes for unique-contact counts and engagement lookups

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-23
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # (campaign_id, kind, contact_id) serves every query (campaign_id, kind) served, and counts contacts
    op.drop_index("ix_events_campaign_kind", table_name="events")
    op.create_index("ix_events_campaign_kind_contact", "events", ["campaign_id", "kind", "contact_id"])
    op.create_index(
        "ix_events_workspace_contact_kind_time",
        "events",
        ["workspace_id", "contact_id", "kind", "occurred_at"],
    )


def downgrade() -> None:
    op.drop_index("ix_events_workspace_contact_kind_time", table_name="events")
    op.drop_index("ix_events_campaign_kind_contact", table_name="events")
    op.create_index("ix_events_campaign_kind", "events", ["campaign_id", "kind"])
