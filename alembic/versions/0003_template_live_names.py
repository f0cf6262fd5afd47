"""template names unique among live templates only

A soft-deleted template keeps its row (running campaigns still read its versions) but frees its name, so the
unique constraint becomes a partial unique index over rows with ``deleted_at IS NULL``.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23 12:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_LIVE = sa.text("deleted_at IS NULL")


def upgrade() -> None:
    with op.batch_alter_table("templates", schema=None) as batch_op:
        batch_op.drop_constraint("uq_templates_workspace_id_name", type_="unique")
        batch_op.create_index(
            "uq_templates_live_name",
            ["workspace_id", "name"],
            unique=True,
            postgresql_where=_LIVE,
            sqlite_where=_LIVE,
        )


def downgrade() -> None:
    with op.batch_alter_table("templates", schema=None) as batch_op:
        batch_op.drop_index("uq_templates_live_name")
        batch_op.create_unique_constraint("uq_templates_workspace_id_name", ["workspace_id", "name"])
