"""campaigns.zones_at: the instant a campaign's recipients' zones are judged at

Planning records it (its start: the later of its own clock and ``start_at``); the send gate judges every
recipient's zones at that same instant. Judged at each tick's own time instead, a number whose zones share
a window only briefly (Alaska's two zones meet at 01:00-02:00 only in the fall-back hour) could be moved by a
late tick, a retry or a resume to a fallback zone the planner never chose, and sent in the quiet hours of
its own zones (tests/compliance/test_quiet_hours.py).

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-23
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("campaigns") as batch:
        batch.add_column(sa.Column("zones_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("campaigns") as batch:
        batch.drop_column("zones_at")
