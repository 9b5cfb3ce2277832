"""Walk an LPAE stage-1 table from its root (ttbr) in guest memory: every leaf, every table page.

Each table page is read once, whole. The result is independent of the kernel's own view: it is
what an SMMU would see.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field

from ..guest.guestmem import GuestMemory
from .lpae import MAX_LEVEL, Descriptor, Granule, MemType, decode, decode_mair

# Levels at which the architecture allows block descriptors (without FEAT_LPA2).
BLOCK_LEVELS = {0x1000: (1, 2), 0x4000: (2,), 0x10000: (2,)}


@dataclass(frozen=True)
class Leaf:
    iova: int
    size: int
    output: int
    level: int
    kind: str  # "block" or "page"
    memtype: MemType
    desc: Descriptor
    entry_addr: int  # guest-physical address of the descriptor

    def translate(self, iova: int) -> int:
        return self.output + (iova - self.iova)

    def describe(self) -> str:
        return (f"iova {self.iova:#x}+{self.size:#x} -> {self.output:#x} [{self.memtype}] "
                f"{self.desc.bits()} @ {self.entry_addr:#x}")


@dataclass(frozen=True)
class TablePage:
    addr: int
    level: int
    iova: int  # first iova this table covers
    entries: int
    valid: int  # number of valid descriptors in it


@dataclass
class Walk:
    ttbr: int
    granule: Granule
    ias: int
    leaves: list[Leaf] = field(default_factory=list)
    tables: list[TablePage] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    raw: dict[int, int] = field(default_factory=dict)  # descriptor address -> non-zero raw value

    def translate(self, iova: int) -> int | None:
        leaf = self.leaf_at(iova)
        return None if leaf is None else leaf.translate(iova)

    def leaf_at(self, iova: int) -> Leaf | None:
        for leaf in self.leaves:
            if leaf.iova <= iova < leaf.iova + leaf.size:
                return leaf
        return None

    @property
    def empty(self) -> bool:
        return not self.leaves

    def empty_tables(self) -> list[TablePage]:
        """Non-root tables with no valid entry: memory io-pgtable kept but nothing uses."""
        return [t for t in self.tables if t.valid == 0 and t.addr != self.ttbr]

    def mapped_bytes(self) -> int:
        return sum(leaf.size for leaf in self.leaves)


def walk(mem: GuestMemory, ttbr: int, granule: Granule, ias: int, mair: int) -> Walk:
    result = Walk(ttbr, granule, ias)
    start = granule.start_level(ias)
    _walk_table(mem, result, ttbr, start, 0, granule.root_entries(ias), mair)
    return result


def _walk_table(mem: GuestMemory, result: Walk, addr: int, level: int, base: int, entries: int,
                mair: int) -> None:
    granule = result.granule
    if addr % min(entries * 8, granule.size):
        result.problems.append(f"L{level} table at {addr:#x} is misaligned")
    data = mem.read(addr, entries * 8)
    raws = struct.unpack(f"<{entries}Q", data)
    step = granule.block_size(level)
    page = TablePage(addr, level, base, entries, sum(1 for r in raws if r & 1))
    result.tables.append(page)
    for index, raw in enumerate(raws):
        if raw == 0:
            continue
        entry = addr + 8 * index
        result.raw[entry] = raw
        iova = base + index * step
        desc = decode(raw, level, granule)
        if desc.kind == "invalid":
            result.problems.append(f"non-zero invalid descriptor {raw:#x} at {entry:#x} (iova {iova:#x})")
        elif desc.kind == "reserved":
            result.problems.append(f"reserved L3 descriptor {raw:#x} at {entry:#x} (iova {iova:#x})")
        elif desc.kind == "table":
            if level == MAX_LEVEL:
                result.problems.append(f"table descriptor at L3 {entry:#x}")
                continue
            _walk_table(mem, result, desc.address, level + 1, iova, granule.size // 8, mair)
        else:
            if desc.kind == "block" and level not in BLOCK_LEVELS[granule.size]:
                result.problems.append(f"block at L{level} not allowed with a "
                                       f"{granule.size // 1024}K granule: {desc.bits()}")
            if desc.kind == "block" and raw & (step - 1) & ~(granule.size - 1) & ((1 << 48) - 1):
                result.problems.append(f"output address bits below the block size are set: {desc.bits()}")
            result.leaves.append(Leaf(iova, step, desc.address, level, desc.kind,
                                      decode_mair(mair, desc.attr_index), desc, entry))
