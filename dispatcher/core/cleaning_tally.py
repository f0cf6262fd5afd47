"""What a cleaned row becomes, and the per-file bookkeeping: in-file dedupe and the four buckets."""

from __future__ import annotations

from array import array
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from hashlib import blake2b
from typing import Any, NewType

from dispatcher.core.cleaning_fields import EmailResult, PhoneResult, Rejection

__all__ = ["Buckets", "CleanContact", "DedupeKey", "FieldWarning", "FileDeduper", "key_digest"]

DedupeKey = NewType("DedupeKey", str)


@dataclass(frozen=True, slots=True)
class FieldWarning:
    """A field that was dropped while its row was kept (for example a bad phone next to a good e-mail)."""

    field: str
    reason: str
    detail: str = ""


@dataclass(frozen=True, slots=True)
class CleanContact:
    """An accepted row: at least one of ``phone`` / ``email`` is set."""

    phone: PhoneResult | None
    email: EmailResult | None
    first_name: str | None = None
    last_name: str | None = None
    timezone: str | None = None
    attributes: Mapping[str, str] = field(default_factory=dict)
    warnings: tuple[FieldWarning, ...] = ()

    @property
    def sms_capable(self) -> bool:
        return self.phone is not None and self.phone.sms_capable

    @property
    def dedupe_key(self) -> DedupeKey:
        """E.164 when there is a phone, else the e-mail casefolded.

        Local parts are case-sensitive in theory only; no mailbox provider treats ``Ann@x`` and ``ann@x``
        as two people, so folding avoids sending twice. E.164 starts with ``+`` and an address has an
        ``@``, so the two kinds of key never collide.
        """
        if self.phone is not None:
            return DedupeKey(self.phone.e164)
        assert self.email is not None, "a CleanContact has a phone or an e-mail"
        return DedupeKey(self.email.normalized.casefold())


def key_digest(key: str) -> int:
    """The 8-byte digest :class:`FileDeduper` keeps for a dedupe key (never 0: 0 marks an empty slot)."""
    return int.from_bytes(blake2b(key.encode(), digest_size=8).digest(), "little") or 1


class FileDeduper:
    """Remembers the keys of one file in 11-22 bytes each (vs ~100 for a set of strings).

    An open-addressing table of 8-byte blake2b digests in an ``array('Q')``: ten million keys fit in about
    135 MB (briefly 200 MB while growing), where a ``set[str]`` would need a gigabyte. Two different keys
    share a digest with probability ~n²/2⁶⁵ (3·10⁻⁶ for ten million keys); the cost of that is one contact
    wrongly skipped as a duplicate.
    """

    __slots__ = ("_count", "_mask", "_table")
    _MAX_LOAD = 0.75

    def __init__(self, expected: int = 0) -> None:
        size = 1024
        while size * self._MAX_LOAD < expected:
            size *= 2
        self._table = array("Q", bytes(8 * size))
        self._mask = size - 1
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def seen(self, key: str) -> bool:
        """True if ``key`` came before; otherwise remember it and return False."""
        return self.seen_digest(key_digest(key))

    def seen_digest(self, digest: int) -> bool:
        """:meth:`seen` for a digest computed elsewhere (cleaning children), so the caller hashes nothing."""
        table, mask = self._table, self._mask
        slot = digest & mask
        while (current := table[slot]) != 0:
            if current == digest:
                return True
            slot = (slot + 1) & mask
        table[slot] = digest
        self._count += 1
        if self._count > (mask + 1) * self._MAX_LOAD:
            self._grow()
        return False

    def _grow(self) -> None:
        old = self._table
        size = 2 * len(old)
        table = array("Q", bytes(8 * size))
        mask = size - 1
        for digest in old:
            if digest:
                slot = digest & mask
                while table[slot] != 0:
                    slot = (slot + 1) & mask
                table[slot] = digest
        self._table, self._mask = table, mask


@dataclass(slots=True)
class Buckets:
    """Counts of where rows went; ``accepted + rejected + duplicate + suppressed == rows`` by construction.

    Only accepted contacts can be duplicates or suppressed, so the caller decides those after
    :func:`~dispatcher.core.cleaning.classify_row` and calls :meth:`add_duplicate` / :meth:`add_suppressed`
    instead of :meth:`add`. Workers cleaning parts of a file each keep one and :meth:`merge` them.
    """

    accepted: int = 0
    rejected: int = 0
    duplicate: int = 0
    suppressed: int = 0
    reasons: Counter[str] = field(default_factory=Counter)

    @property
    def rows(self) -> int:
        return self.accepted + self.rejected + self.duplicate + self.suppressed

    def add(self, outcome: CleanContact | Rejection) -> None:
        if isinstance(outcome, Rejection):
            self.rejected += 1
            self.reasons[str(outcome.reason)] += 1
        else:
            self.accepted += 1

    def add_duplicate(self) -> None:
        self.duplicate += 1

    def add_suppressed(self) -> None:
        self.suppressed += 1

    def merge(self, other: Buckets) -> None:
        self.accepted += other.accepted
        self.rejected += other.rejected
        self.duplicate += other.duplicate
        self.suppressed += other.suppressed
        self.reasons.update(other.reasons)

    def as_dict(self) -> dict[str, Any]:
        """The shape of the CLI's ``--json`` output and of the import progress body."""
        return {
            "rows": self.rows,
            "accepted": self.accepted,
            "rejected": self.rejected,
            "duplicate": self.duplicate,
            "suppressed": self.suppressed,
            "reasons": dict(sorted(self.reasons.items())),
        }
