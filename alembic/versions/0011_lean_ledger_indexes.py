"""lean ledger indexes: every message changes state three times on its way out, and each change of a
``messages`` row writes an entry into every index whose predicate the new row version meets

- ``ix_messages_workspace_id`` goes: ``ix_messages_workspace_channel_address`` leads with the workspace;
- ``ix_messages_batch_id`` goes: batches are read through their campaign and never deleted on their own;
- ``ix_messages_state_lease`` keeps only leased rows (``queued``, ``sending``), the sweeper's whole read;
- ``ix_messages_provider_msgid`` keeps only rows a provider has answered for, the receipts' whole read.

A message on its way out (planned → queued → sending → sent) now writes 15 index entries instead of 24:
five per state change (bench/dispatch.py).

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-23
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_LEASED = sa.text("state IN ('queued', 'sending')")
_HAS_PROVIDER_ID = sa.text("provider_message_id IS NOT NULL")


def upgrade() -> None:
    op.drop_index("ix_messages_workspace_id", table_name="messages")
    op.drop_index("ix_messages_batch_id", table_name="messages")
    op.drop_index("ix_messages_state_lease", table_name="messages")
    op.create_index(
        "ix_messages_state_lease",
        "messages",
        ["state", "lease_until"],
        postgresql_where=_LEASED,
        sqlite_where=_LEASED,
    )
    op.drop_index("ix_messages_provider_msgid", table_name="messages")
    op.create_index(
        "ix_messages_provider_msgid",
        "messages",
        ["provider_message_id"],
        postgresql_where=_HAS_PROVIDER_ID,
        sqlite_where=_HAS_PROVIDER_ID,
    )


def downgrade() -> None:
    op.drop_index("ix_messages_provider_msgid", table_name="messages")
    op.create_index("ix_messages_provider_msgid", "messages", ["provider_message_id"])
    op.drop_index("ix_messages_state_lease", table_name="messages")
    op.create_index("ix_messages_state_lease", "messages", ["state", "lease_until"])
    op.create_index("ix_messages_batch_id", "messages", ["batch_id"])
    op.create_index("ix_messages_workspace_id", "messages", ["workspace_id"])
