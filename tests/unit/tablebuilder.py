"""Builds LPAE stage-1 tables in fake guest memory, straight from the Arm ARM's layout, so the
walker is checked against tables the tests made themselves (not against the kernel)."""
from __future__ import annotations

from harness.guest.guestmem import FakeMemory
from harness.pgtable.lpae import Granule

VALID, TABLE, PAGE = 1, 2, 2
AF, NG = 1 << 10, 1 << 11


class TableBuilder:
    def __init__(self, granule: Granule, ias: int, base: int = 0x4000_0000) -> None:
        self.granule, self.ias = granule, ias
        self.mem = FakeMemory()
        self.next_free = base
        self.ttbr = self._alloc()

    def _alloc(self) -> int:
        addr = self.next_free
        self.next_free += self.granule.size
        return addr

    def _index(self, iova: int, level: int) -> int:
        shift = self.granule.shift + self.granule.bits_per_level * (3 - level)
        if level == self.granule.start_level(self.ias):
            return iova >> shift
        return (iova >> shift) & ((1 << self.granule.bits_per_level) - 1)

    def map(self, iova: int, paddr: int, size: int, attrs: int = AF | NG | (2 << 8)) -> int:
        """Install one leaf of `size` bytes; returns the descriptor's address."""
        table, level = self.ttbr, self.granule.start_level(self.ias)
        while self.granule.block_size(level) != size:
            slot = table + 8 * self._index(iova, level)
            raw = int.from_bytes(self.mem.read(slot, 8), "little")
            if not raw & VALID:
                child = self._alloc()
                self.mem.write_u64(slot, child | TABLE | VALID)
                raw = child | TABLE | VALID
            table = raw & ((1 << 48) - 1) & ~(self.granule.size - 1)
            level += 1
        slot = table + 8 * self._index(iova, level)
        kind = PAGE if level == 3 else 0
        self.mem.write_u64(slot, paddr | attrs | kind | VALID)
        return slot

    def poke(self, addr: int, raw: int) -> None:
        self.mem.write_u64(addr, raw)
