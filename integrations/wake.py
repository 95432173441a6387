"""Waking an asyncio task from whatever thread a journal listener runs in."""

from __future__ import annotations

import asyncio
import threading


def wake(loop: asyncio.AbstractEventLoop | None, loop_thread: int | None, event: asyncio.Event) -> None:
    """Set ``event`` (owned by ``loop``) from the loop's thread or any other; a
    no-op before the loop is known."""
    if loop is None:
        return
    if threading.get_ident() == loop_thread:
        event.set()
    else:
        loop.call_soon_threadsafe(event.set)
