"""Long-running processes: a fast event loop, and a collector that leaves start-up objects alone."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Iterator

import pytest

from dispatcher.loops import GC_THRESHOLDS, fast_event_loop, settle_gc


@pytest.fixture
def restored_gc() -> Iterator[None]:
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


def test_settle_gc_freezes_what_exists_and_collects_young_objects_less_often(restored_gc: None) -> None:
    before = gc.get_freeze_count()
    settle_gc()
    assert gc.get_freeze_count() > before
    assert gc.get_threshold() == GC_THRESHOLDS
    assert gc.isenabled()  # cycles are still collected, only later


def test_cycles_made_after_settling_are_still_collected(restored_gc: None) -> None:
    settle_gc()

    class Node:
        other: object = None

    first, second = Node(), Node()
    first.other, second.other = second, first
    del first, second
    assert gc.collect() >= 2


def test_the_fast_loop_runs_coroutines() -> None:
    loop = fast_event_loop()
    try:
        assert loop.run_until_complete(asyncio.sleep(0, result=42)) == 42
    finally:
        loop.close()
