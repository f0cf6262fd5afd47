"""import_chunks.data stored without compression (PostgreSQL)

Uploads are kept as 1 MB ``bytea`` chunks that are read once by the import job and dropped. PostgreSQL
compressed each with pglz on the way in: about 1.9 s of database CPU per 1,000,000 rows imported, for data
nobody keeps (H3's profile of bench/import.py). ``STORAGE EXTERNAL`` keeps them out of line, uncompressed.

Revision ID: 0014
Revises: 0013
Create Date: 2026-11-23
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE import_chunks ALTER COLUMN data SET STORAGE EXTERNAL")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE import_chunks ALTER COLUMN data SET STORAGE EXTENDED")
