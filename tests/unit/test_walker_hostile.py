"""The walker against tables a hostile or broken guest made: shared and cyclic table pages,
tables outside RAM, walks past the budget, geometries no walk can serve. Each is a problem in
the result (or a WalkError for the geometry), never a hang or a bare exception."""
from __future__ import annotations

import time

import pytest

from harness.errors import WalkError
from harness.guest.guestmem import FakeMemory
from harness.pgtable.lpae import GRANULES
from harness.pgtable.walker import WalkBudget, walk

from .tablebuilder import TABLE, VALID, TableBuilder

G4K = GRANULES[0x1000]
MAIR = 0xFFFFFFFFF404FF44


def test_every_entry_pointing_at_one_table_is_walked_once() -> None:
    """The measured attack: 4 guest writes make each level point all its entries at one page
    (262,657 table visits and ~1M leaves in 15 s before); now each page is walked once."""
    b = TableBuilder(G4K, 39)
    b.map(0x0, 0x8000_0000, 0x1000)
    l1 = b.ttbr
    l2 = b.mem.read(l1, 8)
    l2_addr = int.from_bytes(l2, "little") & ~0xFFF & ((1 << 48) - 1)
    for i in range(512):
        b.poke(l1 + 8 * i, l2_addr | TABLE | VALID)
    started = time.monotonic()
    w = walk(b.mem, b.ttbr, G4K, 39, MAIR)
    assert time.monotonic() - started < 2.0
    assert len(w.tables) == 3 and len(w.leaves) == 1
    assert sum("reached twice" in p for p in w.problems) == 511


def test_a_cycle_back_to_the_root_ends() -> None:
    b = TableBuilder(G4K, 48)
    slot = b.map(0x0, 0x8000_0000, 0x1000)
    b.poke(slot, b.ttbr | TABLE | VALID)  # an L3 "table" is itself a problem; point L2 back up
    l0 = int.from_bytes(b.mem.read(b.ttbr, 8), "little") & ~0xFFF & ((1 << 48) - 1)
    b.poke(l0 + 8, b.ttbr | TABLE | VALID)  # L1 entry 1 -> the root again
    w = walk(b.mem, b.ttbr, G4K, 48, MAIR)
    assert any("reached twice" in p and f"{b.ttbr:#x}" in p for p in w.problems), w.problems


class RamOnly(FakeMemory):
    """Like the shared-memory reader: guest RAM is [1 GiB, 2 GiB), anything else raises."""

    def read(self, addr: int, size: int) -> bytes:
        if not 0x4000_0000 <= addr < 0x8000_0000:
            raise WalkError(f"guest-physical {addr:#x} is outside RAM")
        return super().read(addr, size)


def test_a_table_outside_ram_is_a_finding() -> None:
    b = TableBuilder(G4K, 48)
    b.mem = RamOnly()
    b.ttbr = b._alloc()
    b.map(0x0, 0x8000_0000, 0x1000)
    b.poke(b.ttbr + 8, 0x0905_0000 | TABLE | VALID)  # the SMMU's MMIO: never read
    w = walk(b.mem, b.ttbr, G4K, 48, MAIR)
    assert len(w.leaves) == 1
    assert any("0x9050000" in p and "cannot be read" in p for p in w.problems), w.problems


def test_the_budget_stops_a_huge_walk() -> None:
    b = TableBuilder(G4K, 48)
    for i in range(64):
        b.map(i * 0x1000, 0x8000_0000 + i * 0x1000, 0x1000)
    w = walk(b.mem, b.ttbr, G4K, 48, MAIR, WalkBudget(leaves=10))
    assert w.truncated and len(w.leaves) == 10
    assert any("budget" in p for p in w.problems)
    assert not walk(b.mem, b.ttbr, G4K, 48, MAIR).truncated


@pytest.mark.parametrize("ias", [12, 11, 49, 0])
def test_geometries_no_walk_can_serve(ias: int) -> None:
    with pytest.raises(WalkError, match="cannot be walked"):
        walk(FakeMemory(), 0x4000_0000, G4K, ias, MAIR)


def test_the_pmemsave_reader_never_reads_outside_ram(tmp_path) -> None:
    """pmemsave reads any guest-physical address, MMIO too: the reader used to pass a
    descriptor's pointer straight to it (only the shared-memory reader was held to RAM)."""
    from harness.guest.guestmem import PmemsaveMemory

    class Qmp:
        asked: list[int] = []

        def pmemsave(self, addr: int, size: int, path) -> bytes:
            self.asked.append(addr)
            return bytes(size)
    qmp = Qmp()
    mem = PmemsaveMemory(qmp, tmp_path, 0x4000_0000, 1 << 30)  # type: ignore[arg-type]
    for addr in (0x0905_0000, 0x3FFF_F000, 0x8000_0000, 0x7FFF_FFF9):
        with pytest.raises(WalkError, match="outside RAM"):
            mem.read(addr, 8)
    assert mem.read(0x4000_0000, 8) == bytes(8) and qmp.asked == [0x4000_0000]
    w = walk(mem, 0x0905_0000, G4K, 48, MAIR)  # a ttbr pointing at the SMMU's registers
    assert not w.leaves and any("cannot be read" in p for p in w.problems), w.problems
    assert qmp.asked == [0x4000_0000]
