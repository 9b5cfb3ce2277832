"""Builds LPAE stage-1 tables in fake guest memory, straight from the Arm ARM's layout, so the
walker is checked against tables the tests made themselves (not against the kernel)."""
from __future__ import annotations

from harness.guest.guestmem import FakeMemory
from harness.pgtable.lpae import Granule

VALID, TABLE, PAGE = 1, 2, 2
AF, NG = 1 << 10, 1 << 11


NS, DBM, NSTABLE = 1 << 5, 1 << 51, 1 << 63


class TableBuilder:
    def __init__(self, granule: Granule, ias: int, base: int = 0x4000_0000,
                 table_bits: int = 0) -> None:
        """`table_bits` go into every table descriptor made (e.g. NSTABLE)."""
        self.granule, self.ias, self.table_bits = granule, ias, table_bits
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

    def pack(self, addr: int) -> int:
        """An address as descriptors hold it: with the 64K granule, bits [51:48] of a 52-bit
        address go in descriptor bits [15:12] (Arm ARM, FEAT_LPA)."""
        if self.granule.size == 0x10000:
            return (addr & ((1 << 48) - 1)) | ((addr >> 48) & 0xF) << 12
        return addr

    def map(self, iova: int, paddr: int, size: int, attrs: int = AF | NG | (2 << 8)) -> int:
        """Install one leaf of `size` bytes; returns the descriptor's address."""
        table, level = self.ttbr, self.granule.start_level(self.ias)
        while self.granule.block_size(level) != size:
            slot = table + 8 * self._index(iova, level)
            raw = int.from_bytes(self.mem.read(slot, 8), "little")
            if not raw & VALID:
                child = self._alloc()
                raw = self.pack(child) | self.table_bits | TABLE | VALID
                self.mem.write_u64(slot, raw)
            table = raw & ((1 << 48) - 1) & ~(self.granule.size - 1)
            level += 1
        slot = table + 8 * self._index(iova, level)
        kind = PAGE if level == 3 else 0
        self.mem.write_u64(slot, self.pack(paddr) | attrs | kind | VALID)
        return slot

    def poke(self, addr: int, raw: int) -> None:
        self.mem.write_u64(addr, raw)
