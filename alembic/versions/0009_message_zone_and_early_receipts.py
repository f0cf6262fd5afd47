"""ledger rows carry the recipient's zone (local-time reports); receipts that beat the provider id wait

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-23
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

# the zone reports used to derive per row: the contact's field, else its phone number's first zone
_FILL_PG = """
UPDATE messages AS m SET zone = coalesce(c.timezone, c.time_zones ->> 0)
FROM contacts AS c
WHERE c.id = m.contact_id AND coalesce(c.timezone, c.time_zones ->> 0) IS NOT NULL
"""
_FILL_SQLITE = """
UPDATE messages SET zone = (
    SELECT coalesce(c.timezone, json_extract(c.time_zones, '$[0]')) FROM contacts AS c
    WHERE c.id = messages.contact_id
)
"""


def upgrade() -> None:
    with op.batch_alter_table("messages") as batch_op:
        batch_op.add_column(sa.Column("zone", sa.String(64), nullable=True))
    dialect = op.get_bind().dialect.name
    op.execute(sa.text(_FILL_PG if dialect == "postgresql" else _FILL_SQLITE))
    op.create_table(
        "early_receipts",
        sa.Column("id", BigId, primary_key=True),
        sa.Column("workspace_id", BigId, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("provider_id", BigId, nullable=False),
        sa.Column("provider_message_id", sa.String(100), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("error_code", sa.String(64), nullable=True),
        sa.Column("suppress_reason", sa.String(32), nullable=True),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_early_receipts_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["provider_id"],
            ["providers.id"],
            name=op.f("fk_early_receipts_provider_id_providers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_early_receipts")),
        sa.UniqueConstraint(
            "provider_id",
            "provider_message_id",
            name=op.f("uq_early_receipts_provider_id_provider_message_id"),
        ),
    )
    op.create_index("ix_early_receipts_workspace_id", "early_receipts", ["workspace_id"])
    op.create_index("ix_early_receipts_created_at", "early_receipts", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_early_receipts_created_at", table_name="early_receipts")
    op.drop_index("ix_early_receipts_workspace_id", table_name="early_receipts")
    op.drop_table("early_receipts")
    with op.batch_alter_table("messages") as batch_op:
        batch_op.drop_column("zone")
