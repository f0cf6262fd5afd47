"""The event loop for our long-running processes (workers, stand-ins): uvloop where it exists."""

from __future__ import annotations

import asyncio
import gc

# Collect young objects after 50,000 net allocations instead of CPython's 700: a send chunk allocates
# hundreds of thousands of short-lived containers, nearly all freed by reference counting, and with the
# defaults the collector ran 1,300 times and scanned the whole heap ten times per 50,000 messages, a
# seventh of a worker's CPU. Cycles still get collected, a little later.
GC_THRESHOLDS = (50_000, 20, 10)


def fast_event_loop() -> asyncio.AbstractEventLoop:
    """A new uvloop loop, or the standard one where uvloop is missing (e.g. Windows: it works, slower).

    Their CPU goes mostly to HTTP clients' and servers' event loops, which uvloop runs in C."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def settle_gc() -> None:
    """For a long-running process whose start-up is done: what exists now (modules, pools, caches) is
    moved out of the collector's sight for good (``gc.freeze``), and young objects are collected less
    often (:data:`GC_THRESHOLDS`)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
