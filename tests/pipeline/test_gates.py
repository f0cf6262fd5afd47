"""Which rows of a chunk give their frequency-cap slot back (pure: no Redis, no database)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from dispatcher.pipeline.compose import Rendered
from dispatcher.pipeline.gates import Gate, held_back, never_arrived
from dispatcher.pipeline.outcomes import Writes
from dispatcher.storage.ledger_rows import Due, Final, Retry

NOW = datetime(2030, 1, 14, 12, tzinfo=UTC)


def _due(n: int, *, ambiguous: bool = False) -> Due:
    return Due(n, n, "A", f"+1555000{n:04d}", 0, None, {}, [], None, 1 if ambiguous else None, ambiguous)


# (how the row ended in this job, whether an earlier attempt was in doubt) → gives its slot back
CASES = [
    ("gate", Retry(1, NOW, "budget_exhausted", None), False, True),
    ("gate", Retry(1, NOW, "budget_exhausted", None), True, False),  # its earlier attempt still counts
    ("gate", Retry(1, NOW, "throttled", None), False, False),  # stopped before the caps: took no slot
    ("writes", Retry(1, NOW, "server_error", None), False, True),  # nothing was handed over
    ("writes", Retry(1, NOW, "throttled", None, counted=False), False, True),
    ("writes", Retry(1, NOW, "timeout", None, ambiguous=True), False, False),  # it may have arrived
    ("writes", Retry(1, NOW, "server_error", None), True, False),  # an earlier attempt may have arrived
    ("writes", Final(1, "failed", "invalid_number", None), False, True),
    ("writes", Final(1, "failed", "invalid_number", None), True, False),
    ("writes", Final(1, "failed", "unconfirmed", None), False, False),
    ("gate", Final(1, "capped", "frequency_cap", None), False, False),  # never held a slot
]


@pytest.mark.parametrize(("where", "ending", "earlier_doubt", "gives_back"), CASES)
def test_only_rows_that_certainly_reached_nobody_give_their_slot_back(
    where: str, ending: Retry | Final, earlier_doubt: bool, gives_back: bool
) -> None:
    due = _due(1, ambiguous=earlier_doubt)
    gate, writes = Gate(rendered={1: Rendered(due)}), Writes()
    target: Gate | Writes = gate if where == "gate" else writes
    (target.retries if isinstance(ending, Retry) else target.finals).append(ending)  # type: ignore[arg-type]
    assert [*held_back(gate), *never_arrived(gate, writes)] == ([due] if gives_back else [])


def test_a_row_lost_to_another_job_keeps_its_slot() -> None:
    """A row this job never rendered (its lease moved on) shares its send id with the new owner's."""
    writes = Writes(finals=[Final(7, "failed", "invalid_number", None)])
    assert never_arrived(Gate(rendered={1: Rendered(_due(1))}), writes) == []
