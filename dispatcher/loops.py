"""The event loop for our long-running processes (workers, stand-ins): uvloop where it exists."""

from __future__ import annotations

import asyncio


def fast_event_loop() -> asyncio.AbstractEventLoop:
    """A new uvloop loop, or the standard one where uvloop is missing (e.g. Windows: it works, slower).

    Their CPU goes mostly to HTTP clients' and servers' event loops, which uvloop runs in C."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()
