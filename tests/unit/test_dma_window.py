"""The DMA tests' check that a transfer changed exactly the bytes it should, on fake memory."""
from __future__ import annotations

from types import SimpleNamespace

from harness.guest.guestmem import FakeMemory
from harness.pgtable.device import DmaBench

START, SIZE = 0x8000_0000, 0x10_0000


def _bench() -> tuple[DmaBench, FakeMemory]:
    memory = FakeMemory()
    memory.window = (START, SIZE)  # type: ignore[attr-defined]
    return DmaBench(SimpleNamespace(), memory, SimpleNamespace()), memory  # type: ignore[arg-type]


def test_only_the_placed_bytes_may_change():
    bench, memory = _bench()
    memory.write(START + 0x5000, b"\x11" * 64)
    before = bench.window_bytes()
    data = bytes(range(256)) * 16
    src, dst = START + 0x20000, START + 0x3000
    memory.write(src, data)
    memory.write(dst, data)
    assert bench.changed_only(before, [(src, data), (dst, data)])
    assert not bench.changed_only(before, [(src, data)]), "the destination changed too"
    memory.write(START + SIZE - 1, b"\x01")  # the window's last byte
    assert not bench.changed_only(before, [(src, data), (dst, data)])
    memory.write(START + SIZE - 1, b"\x00")
    memory.write(dst + len(data), b"\x02")  # one byte past the destination
    assert not bench.changed_only(before, [(src, data), (dst, data)])
    memory.write(dst + len(data), b"\x00")
    assert not bench.changed_only(before, [(src, data[::-1]), (dst, data)]), "wrong bytes placed"
    assert bench.changed_only(before, [(src, data), (dst, data)])
