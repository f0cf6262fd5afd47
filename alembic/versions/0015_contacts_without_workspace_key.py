"""contacts lose their own foreign key to workspaces and their indexes on workspace, phone and e-mail

A contact belongs to a list, and the list's foreign key already cascades from the workspace, so the
contact's own key added nothing but a second lookup per row: on a COPY of 100,000 contacts the two
foreign-key checks cost 609 ms against 587 ms for the insert itself (bench/import.py). No query reaches
contacts by workspace alone (always through a list or an id), so the index on ``workspace_id`` was
written on every import and never read. Nor does any query look contacts up by phone or e-mail: the list
search matches prefixes (``LIKE 'x%'``, ``lower(email)``), which these plain indexes cannot serve outside
the C collation, and replies and suppressions are matched on the ledger's and the suppressions' own
indexes. The three indexes were a third of the database's CPU on an import. The column stays: every query
still filters on the workspace.

SQLite cannot drop a constraint: the table is rebuilt. ``alembic/env.py`` runs migrations on SQLite with
foreign keys off, as SQLite's own procedure for such changes requires, and checks them afterwards.

Revision ID: 0015
Revises: 0014
Create Date: 2026-11-24
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_KEY = "fk_contacts_workspace_id_workspaces"
_INDEXES = {
    "ix_contacts_workspace_id": "workspace_id",
    "ix_contacts_phone": "phone",
    "ix_contacts_email": "email",
}


def upgrade() -> None:
    with op.batch_alter_table("contacts", recreate="auto") as batch_op:
        for name in _INDEXES:
            batch_op.drop_index(name)
        batch_op.drop_constraint(_KEY, type_="foreignkey")


def downgrade() -> None:
    with op.batch_alter_table("contacts", recreate="auto") as batch_op:
        batch_op.create_foreign_key(_KEY, "workspaces", ["workspace_id"], ["id"], ondelete="CASCADE")
        for name, column in _INDEXES.items():
            batch_op.create_index(name, [column], unique=False)
