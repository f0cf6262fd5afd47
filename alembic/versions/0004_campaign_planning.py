"""campaign planning: frozen audience bound, excluded count, pilot delay

Planning freezes the audience at start (``audience_max_id``: contacts added later stay out, also when a
crashed planning job runs again), counts the members it could not address (``excluded``), and releases the
rest of a pilot campaign ``pilot_delay_minutes`` after the pilot's first send instant.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("campaigns", schema=None) as batch_op:
        batch_op.add_column(sa.Column("pilot_delay_minutes", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("audience_max_id", _BIG_ID, nullable=True))
        # the server default only fills existing rows; the model supplies the value from then on
        batch_op.add_column(sa.Column("excluded", sa.Integer(), nullable=False, server_default="0"))
    with op.batch_alter_table("campaigns", schema=None) as batch_op:
        batch_op.alter_column("excluded", server_default=None)


def downgrade() -> None:
    with op.batch_alter_table("campaigns", schema=None) as batch_op:
        batch_op.drop_column("excluded")
        batch_op.drop_column("audience_max_id")
        batch_op.drop_column("pilot_delay_minutes")
