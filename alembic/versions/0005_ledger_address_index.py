"""ledger index for send-time cap history lookups by address

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_messages_workspace_channel_address", "messages", ["workspace_id", "channel", "address"]
    )


def downgrade() -> None:
    op.drop_index("ix_messages_workspace_channel_address", table_name="messages")
