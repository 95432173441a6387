"""A card emulator on a free UDP port and a running NfcReader polling it."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from integrations.nfc.emulator import EmulatedCard, TagEmulator
from integrations.nfc.reader import NfcReader
from station.config import ReaderSection
from station.model import CardPresented


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def emulator() -> Iterator[TagEmulator]:
    with TagEmulator(free_udp_port()) as emu:
        yield emu


def make_reader(port: int, **kwargs: Any) -> NfcReader:
    # one missed poll = removed: each miss costs 1 s on the udp driver
    kwargs.setdefault("removal_misses", 1)
    return NfcReader(ReaderSection(device=f"udp:127.0.0.1:{port}", interval_s=0.05), **kwargs)


@dataclass
class Running:
    reader: NfcReader
    cards: asyncio.Queue[CardPresented]
    task: asyncio.Task[None]

    async def next_card(self, timeout: float = 5.0) -> CardPresented:
        return await asyncio.wait_for(self.cards.get(), timeout)


@contextlib.asynccontextmanager
async def running(reader: NfcReader) -> AsyncIterator[Running]:
    cards: asyncio.Queue[CardPresented] = asyncio.Queue()

    async def on_card(card: CardPresented) -> None:
        await cards.put(card)

    task = asyncio.create_task(reader.run(on_card), name="nfc-reader-run")
    try:
        yield Running(reader, cards, task)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task


async def tap(emu: TagEmulator, card: EmulatedCard, hold_s: float = 0.1, wait_s: float = 5.0) -> bool:
    """Present the card until read, then ``hold_s`` more, then remove it."""
    return await asyncio.to_thread(emu.hold, card, hold_s, until_read_s=wait_s)
