"""Remembered answers per request id, so a retried command gets the same answer.

The station keeps its own (durable) idempotency per request id; this bounded,
in-memory memo lets the API answer a retry byte for byte, including a retry
that arrives while the first attempt is still running (it waits for it).
A request id reused with a different body is refused (as the IETF
Idempotency-Key draft recommends). A failed attempt is not remembered.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

from integrations.api.errors import ApiError

T = TypeVar("T")


class IdempotencyMemo(Generic[T]):
    def __init__(self, size: int = 4096) -> None:
        self._size = size
        self._entries: OrderedDict[str, tuple[Hashable, asyncio.Future[T]]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    async def answer(self, key: str, fingerprint: Hashable, call: Callable[[], Awaitable[T]]) -> T:
        entry = self._entries.get(key)
        if entry is not None:
            previous, future = entry
            if previous != fingerprint:
                raise ApiError(422, "request_id_reused", f"request_id {key!r} was already used for another request")
            self._entries.move_to_end(key)
            return await asyncio.shield(future)

        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._entries[key] = (fingerprint, future)
        while len(self._entries) > self._size:
            self._entries.popitem(last=False)  # waiters of an evicted entry keep their future
        try:
            result = await call()
        except BaseException as err:
            if self._entries.get(key, (None, None))[1] is future:
                del self._entries[key]
            failure = err if isinstance(err, Exception) else ApiError(503, "interrupted", "the first attempt was interrupted; retry")
            future.set_exception(failure)
            future.exception()  # retrieved: waiters, if any, get it raised
            raise
        future.set_result(result)
        return result
