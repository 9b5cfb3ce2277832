"""The DMA tests' checks that a transfer changed exactly the bytes it should (or none), on
fake memory."""
from __future__ import annotations

from types import SimpleNamespace

from harness.guest.guestmem import FakeMemory
from harness.pgtable.device import DmaBench

START, SIZE = 0x8000_0000, 0x10_0000
DATA = bytes(range(256)) * 16
SRC, DST = START + 0x20000, START + 0x3000


def _changed_only(writes: list[tuple[int, bytes]], placed: list[tuple[int, bytes]]) -> bool:
    memory = FakeMemory()
    memory.window = (START, SIZE)  # type: ignore[attr-defined]
    memory.write(START + 0x5000, b"\x11" * 64)  # something there before
    bench = DmaBench(SimpleNamespace(), memory, SimpleNamespace())  # type: ignore[arg-type]
    before = bench.snapshot()
    for pa, data in writes:
        memory.write(pa, data)
    return bench.changed_only(before, placed)


def test_only_the_placed_bytes_may_change():
    placed = [(SRC, DATA), (DST, DATA)]
    assert _changed_only(placed, placed)
    assert not _changed_only(placed, [(SRC, DATA)]), "the destination changed too"
    assert not _changed_only(placed + [(START + SIZE - 1, b"\x01")], placed), "the last byte"
    assert not _changed_only(placed + [(DST + len(DATA), b"\x02")], placed), "one byte past"
    assert not _changed_only(placed, [(SRC, DATA[::-1]), (DST, DATA)]), "other bytes placed"
    assert not _changed_only([(START, b"\x05")], []), "the first byte"


def test_unchanged_sees_any_change_and_snapshots_reuse_their_buffer():
    memory = FakeMemory()
    memory.window = (START, SIZE)  # type: ignore[attr-defined]
    bench = DmaBench(SimpleNamespace(), memory, SimpleNamespace())  # type: ignore[arg-type]
    before = bench.snapshot()
    assert bench.unchanged(before)
    memory.write(START + 0x777, b"\x09")
    assert not bench.unchanged(before)
    again = bench.snapshot()
    assert again is before and bench.unchanged(again)
