"""Cleaning spread over every core: batches of parsed rows go to a process pool and come back as compact
tuples, in order. Used by the import job and by the offline ``dispatcher lists clean`` command alike.

The parent keeps what must be sequential (CSV parsing, in-file dedupe in file order, writing); the children
do what is CPU-bound (phonenumbers, email-validator). Each child keeps a :class:`CleaningCache`, so values
that repeat across a file (a shared office line, a re-upload) are cleaned once.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
from collections.abc import AsyncIterator, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any

from dispatcher.core.cleaning import CleanContact, CleaningCache, Rejection, classify_row
from dispatcher.core.csvinput import ParsedRow

# (line, dedupe_key, phone, phone_type, phone_region, time_zones, sms_capable, email, first, last, tz, attrs)
Accepted = tuple[
    int,
    str,
    str | None,
    str | None,
    str | None,
    list[str],
    bool,
    str | None,
    str | None,
    str | None,
    str | None,
    dict[str, str],
]
# (line, reason, original values)
Rejected = tuple[int, str, dict[str, str]]
BATCH_ROWS = 2000


@dataclass(frozen=True, slots=True)
class CleanOptions:
    default_region: str | None
    channels: frozenset[str] | None = None
    check_deliverability: bool = False


@dataclass(frozen=True, slots=True)
class CleanedBatch:
    accepted: list[Accepted]
    rejected: list[Rejected]
    warnings: dict[str, int]


_CACHE: CleaningCache | None = None


def clean_batch(rows: Sequence[ParsedRow], options: CleanOptions) -> CleanedBatch:
    """Runs in a child process (or inline when there is one core)."""
    global _CACHE
    if _CACHE is None:
        _CACHE = CleaningCache()
    accepted: list[Accepted] = []
    rejected: list[Rejected] = []
    warnings: dict[str, int] = {}
    for row in rows:
        if row.values is None:
            problem = row.rejection()
            rejected.append((row.line, problem.reason.value if problem else "malformed_row", _raw(row)))
            continue
        outcome = classify_row(
            row.values,
            default_region=options.default_region,
            channels=options.channels,
            check_deliverability=options.check_deliverability,
            cache=_CACHE,
        )
        if isinstance(outcome, Rejection):
            rejected.append((row.line, outcome.reason.value, row.values))
        else:
            accepted.append(_compact(row.line, outcome))
            for warning in outcome.warnings:
                warnings[warning.reason] = warnings.get(warning.reason, 0) + 1
    return CleanedBatch(accepted, rejected, warnings)


def _raw(row: ParsedRow) -> dict[str, str]:
    return {str(i + 1): value for i, value in enumerate(row.raw)}


def _compact(line: int, c: CleanContact) -> Accepted:
    phone = c.phone
    return (
        line,
        c.dedupe_key,
        phone.e164 if phone else None,
        phone.number_type if phone else None,
        phone.region if phone else None,
        list(phone.time_zones) if phone else [],
        c.sms_capable,
        c.email.normalized if c.email else None,
        c.first_name,
        c.last_name,
        c.timezone,
        dict(c.attributes),
    )


class ParallelCleaner:
    """A process pool sized to the machine; ``clean`` keeps a few batches in flight and yields in order."""

    def __init__(self, processes: int | None = None) -> None:
        # 0 cleans inline in this process (tests, one-core machines); None uses every core.
        self.processes = max(1, os.cpu_count() or 1) if processes is None else max(0, processes)
        self._pool: ProcessPoolExecutor | None = None

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            # spawn, not fork: the parent runs an event loop and database connections.
            self._pool = ProcessPoolExecutor(self.processes, mp_context=multiprocessing.get_context("spawn"))
        return self._pool

    async def clean(
        self, batches: AsyncIterator[list[ParsedRow]], options: CleanOptions
    ) -> AsyncIterator[tuple[list[ParsedRow], CleanedBatch]]:
        if self.processes == 0:
            async for batch in batches:
                yield batch, clean_batch(batch, options)
            return
        loop = asyncio.get_running_loop()
        pool = self._executor()
        in_flight: list[tuple[list[ParsedRow], asyncio.Future[CleanedBatch]]] = []
        async for batch in batches:
            in_flight.append((batch, loop.run_in_executor(pool, clean_batch, batch, options)))
            if len(in_flight) > self.processes * 2:
                rows, future = in_flight.pop(0)
                yield rows, await future
        for rows, future in in_flight:
            yield rows, await future

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


def batched(rows: Iterable[ParsedRow], size: int = BATCH_ROWS) -> Iterable[list[ParsedRow]]:
    batch: list[ParsedRow] = []
    for row in rows:
        batch.append(row)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def as_dict(values: Any) -> dict[str, str]:
    return {str(k): str(v) for k, v in dict(values).items()}
