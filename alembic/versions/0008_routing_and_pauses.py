"""ledger rows remember an ambiguous last attempt (routing pins them); campaigns say why they paused

Revision ID: 0008
Revises: 0006
Create Date: 2026-11-23
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("messages") as batch_op:
        batch_op.add_column(sa.Column("ambiguous", sa.Boolean(), nullable=False, server_default=sa.false()))
    with op.batch_alter_table("campaigns") as batch_op:
        batch_op.add_column(sa.Column("pause_reason", sa.String(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("campaigns") as batch_op:
        batch_op.drop_column("pause_reason")
    with op.batch_alter_table("messages") as batch_op:
        batch_op.drop_column("ambiguous")
