"""PostgreSQL imports written straight into ``contacts`` inside one long transaction.

The staging path (:mod:`dispatcher.storage.imports`) writes every row twice and publishes with one
single-core ``INSERT … SELECT`` that cannot overlap cleaning. Here each cleaned block is COPYed into
``contacts`` (and ``consent_records``) as it arrives, on one connection whose transaction commits only with
the import's completion: a crash or a fatal error rolls everything back, so nobody ever sees a half list.

COPY has no ``ON CONFLICT``, so the buckets are decided before it: the list's existing keys and the
workspace's suppressions are looked up per block, and a per-list advisory lock, held by the transaction,
keeps a second import of the same list from inserting the same keys meanwhile (only imports write
contacts). Rows are encoded in the cleaning processes (:func:`encode_contact`, :func:`encode_consents`).
"""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from dispatcher.storage.bulk import copy_line, zones_json
from dispatcher.storage.contacts import CLEANED_FIELDS

CONTACT_COLUMNS = ("workspace_id", "list_id", "import_id", "created_at", *CLEANED_FIELDS)
CONSENT_COLUMNS = ("workspace_id", "created_at", "address", "channel", "granted", "source", "import_id")
_ZONES, _ATTRIBUTES = CONTACT_COLUMNS.index("time_zones"), CONTACT_COLUMNS.index("attributes")
_LOCK_NAMESPACE = 0x1D5  # two-key advisory locks: (namespace, list id), apart from other users of locks


@dataclass(frozen=True, slots=True)
class LoadTarget:
    """What every row of one import shares; pickled to the cleaning processes."""

    workspace_id: int
    list_id: int
    import_id: int
    created_at: str  # ISO 8601 with offset, as COPY reads a timestamptz
    consent_source: str | None


@dataclass(frozen=True, slots=True)
class ListState:
    has_contacts: bool  # else no lookup of existing keys is needed: the lock keeps other imports out
    has_suppressions: bool


@dataclass(slots=True)
class BlockCounts:
    accepted: int = 0
    duplicate_on_list: int = 0
    suppressed: int = 0


def encode_contact(target: LoadTarget, accepted: tuple[Any, ...]) -> str:
    """A COPY line of ``contacts`` from a cleaner tuple (line, key, phone, …, attributes)."""
    values = [target.workspace_id, target.list_id, target.import_id, target.created_at, *accepted[1:]]
    values[_ZONES] = zones_json(tuple(values[_ZONES]))
    values[_ATTRIBUTES] = json.dumps(values[_ATTRIBUTES], ensure_ascii=False)
    return copy_line(values)


def encode_consents(target: LoadTarget, phone: str | None, email: str | None) -> str:
    """The append-only consent records of one new contact: one per address it has."""
    if target.consent_source is None:
        return ""
    lines = [
        copy_line(
            (
                target.workspace_id,
                target.created_at,
                address,
                channel,
                True,
                target.consent_source,
                target.import_id,
            )
        )
        for address, channel in ((phone, "sms"), (email, "email"))
        if address is not None
    ]
    return "".join(lines)


async def lock_list(driver: Any, workspace_id: int, list_id: int) -> ListState:
    """Take the list's import lock for the transaction; then what the per-block checks need to look at."""
    await driver.execute("SELECT pg_advisory_xact_lock($1, $2)", _LOCK_NAMESPACE, list_id)
    has_contacts = await driver.fetchval("SELECT EXISTS (SELECT 1 FROM contacts WHERE list_id = $1)", list_id)
    has_suppressions = await driver.fetchval(
        "SELECT EXISTS (SELECT 1 FROM suppressions WHERE workspace_id = $1)", workspace_id
    )
    return ListState(bool(has_contacts), bool(has_suppressions))


async def load_block(
    driver: Any,
    target: LoadTarget,
    state: ListState,
    rows: Sequence[tuple[str, str, str | None, str | None, str]],
) -> BlockCounts:
    """Write one block of in-file-unique rows: (COPY line, dedupe key, phone, e-mail, consent lines).

    A row is suppressed when every address it has is suppressed on its channel (or on ``all``): a row with
    one usable channel left is kept, and the send-time check skips the other. Suppression wins over
    ``duplicate_on_list``, as in the staging path.
    """
    counts = BlockCounts()
    if state.has_suppressions:
        rows = await _drop_suppressed(driver, target.workspace_id, rows, counts)
    if state.has_contacts and rows:
        found = await driver.fetch(
            "SELECT dedupe_key FROM contacts WHERE list_id = $1 AND dedupe_key = ANY($2::text[])",
            target.list_id,
            [row[1] for row in rows],
        )
        if found:
            existing = {record[0] for record in found}
            kept = [row for row in rows if row[1] not in existing]
            counts.duplicate_on_list = len(rows) - len(kept)
            rows = kept
    counts.accepted = len(rows)
    if rows:
        await _copy(driver, "contacts", CONTACT_COLUMNS, "".join(row[0] for row in rows))
        consents = "".join(row[4] for row in rows)
        if consents:
            await _copy(driver, "consent_records", CONSENT_COLUMNS, consents)
    return counts


async def _drop_suppressed(
    driver: Any,
    workspace_id: int,
    rows: Sequence[tuple[str, str, str | None, str | None, str]],
    counts: BlockCounts,
) -> list[tuple[str, str, str | None, str | None, str]]:
    sms = await _suppressed(driver, workspace_id, "sms", [row[2] for row in rows if row[2] is not None])
    email = await _suppressed(driver, workspace_id, "email", [row[3] for row in rows if row[3] is not None])
    kept = [
        row for row in rows if not ((row[2] is None or row[2] in sms) and (row[3] is None or row[3] in email))
    ]
    counts.suppressed = len(rows) - len(kept)
    return kept


async def _suppressed(driver: Any, workspace_id: int, channel: str, addresses: list[str]) -> set[str]:
    if not addresses:
        return set()
    found = await driver.fetch(
        "SELECT address FROM suppressions WHERE workspace_id = $1 AND channel = ANY($2::text[])"
        " AND address = ANY($3::text[])",
        workspace_id,
        [channel, "all"],
        addresses,
    )
    return {record[0] for record in found}


async def drop_late_suppressed(driver: Any, target: LoadTarget, since: datetime) -> int:
    """Take back this import's rows whose every address was suppressed while it ran; how many.

    Each block is checked against the suppressions of its moment (none at all when the workspace had none
    at the start), so a STOP that arrives mid-import is caught here, just before the commit, as the
    staging path catches it at its publish. The look-up by address scans the import's rows, but only when
    a suppression did arrive (contacts keep no index on phone or e-mail: migration 0015).
    """
    late = await driver.fetch(
        "SELECT channel, address FROM suppressions WHERE workspace_id = $1 AND created_at >= $2",
        target.workspace_id,
        since,
    )
    if not late:
        return 0
    sms = [address for channel, address in late if channel in ("sms", "all")]
    email = [address for channel, address in late if channel in ("email", "all")]
    candidates = await driver.fetch(
        "SELECT id, phone, email FROM contacts WHERE list_id = $1 AND import_id = $2"
        " AND (phone = ANY($3::text[]) OR email = ANY($4::text[]))",
        target.list_id,
        target.import_id,
        sms,
        email,
    )
    if not candidates:
        return 0
    phones = [row["phone"] for row in candidates if row["phone"] is not None]
    emails = [row["email"] for row in candidates if row["email"] is not None]
    sms_out = await _suppressed(driver, target.workspace_id, "sms", phones)
    email_out = await _suppressed(driver, target.workspace_id, "email", emails)
    gone = [
        row
        for row in candidates
        if (row["phone"] is None or row["phone"] in sms_out)
        and (row["email"] is None or row["email"] in email_out)
    ]
    if not gone:
        return 0
    await driver.execute("DELETE FROM contacts WHERE id = ANY($1::bigint[])", [row["id"] for row in gone])
    # their consent lines go too, unless another row of this import still holds the address
    await driver.execute(
        "DELETE FROM consent_records r WHERE r.workspace_id = $1 AND r.import_id = $2"
        " AND r.address = ANY($3::text[]) AND NOT EXISTS (SELECT 1 FROM contacts c"
        " WHERE c.list_id = $4 AND c.import_id = $2 AND (c.phone = r.address OR c.email = r.address))",
        target.workspace_id,
        target.import_id,
        [address for row in gone for address in (row["phone"], row["email"]) if address is not None],
        target.list_id,
    )
    return len(gone)


async def _copy(driver: Any, table: str, columns: Sequence[str], text: str) -> None:
    # Closed on the way out: asyncpg's COPY leaves the buffer in a reference cycle, so without close() each
    # block's megabytes waited for the cycle collector (200 MB more at the peak of a 1M-row import).
    with io.BytesIO(text.encode()) as source:
        await driver.copy_to_table(table, source=source, columns=list(columns), format="text")
