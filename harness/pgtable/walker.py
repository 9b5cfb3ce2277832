"""Walk an LPAE stage-1 table from its root (ttbr) in guest memory: every leaf, every table page.

Each table page is read once, whole. The result is independent of the kernel's own view: it is
what an SMMU would see. The guest is not trusted: a table page reached twice (shared or cyclic),
a table outside guest RAM, or a walk beyond its budget (tables, leaves, seconds) is a problem
in the result, never a hang of the harness or an exception in the middle of a report.
"""
from __future__ import annotations

import struct
import time
from itertools import compress
from dataclasses import dataclass, field

from ..errors import WalkError
from ..guest.guestmem import GuestMemory
from .lpae import MAX_LEVEL, Descriptor, Granule, MemType, decode, decode_mair

# Levels at which the architecture allows block descriptors (without FEAT_LPA2).
BLOCK_LEVELS = {0x1000: (1, 2), 0x4000: (2,), 0x10000: (2,)}
# With the 64K granule and 52-bit output addresses (FEAT_LPA), level 1 holds 4TB blocks too.
BLOCK_LEVELS_LPA = {**BLOCK_LEVELS, 0x10000: (1, 2)}
MAX_OAS = {0x1000: 48, 0x4000: 48, 0x10000: 52}  # without FEAT_LPA2, as io-pgtable-arm


def block_levels(granule: Granule, oas: int) -> tuple[int, ...]:
    """The levels where a block may sit in a table whose output addresses have `oas` bits."""
    return (BLOCK_LEVELS_LPA if oas > 48 else BLOCK_LEVELS)[granule.size]


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
class WalkBudget:
    """Far above any table the suite builds (256 full leaf tables are ~131k leaves), far below
    what a hostile guest can make the walker chase while its vCPUs are paused."""

    tables: int = 1 << 14
    leaves: int = 1 << 21
    seconds: float = 20.0


@dataclass(frozen=True)
class TablePage:
    addr: int
    level: int
    iova: int  # first iova this table covers
    entries: int
    valid: int  # number of valid descriptors in it
    parent: Descriptor | None = None  # the table descriptor that points here (None: the root)


@dataclass
class Walk:
    ttbr: int
    granule: Granule
    ias: int
    oas: int = 48
    leaves: list[Leaf] = field(default_factory=list)
    tables: list[TablePage] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    raw: dict[int, int] = field(default_factory=dict)  # descriptor address -> non-zero raw value
    truncated: bool = False  # the budget ran out: leaves and tables are a prefix

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


class _BudgetExceeded(Exception):
    pass


@dataclass
class _Walker:
    mem: GuestMemory
    result: Walk
    mair: int
    budget: WalkBudget
    deadline: float
    seen: dict[int, int] = field(default_factory=dict)  # table page -> descriptor that led there

    def spend(self) -> None:
        r, b = self.result, self.budget
        if len(r.tables) >= b.tables or len(r.leaves) >= b.leaves or time.monotonic() > self.deadline:
            raise _BudgetExceeded(f"walk stopped at its budget ({len(r.tables)} tables, "
                                  f"{len(r.leaves)} leaves, limits {b.tables} tables, "
                                  f"{b.leaves} leaves, {b.seconds:.0f} s)")


def walk(mem: GuestMemory, ttbr: int, granule: Granule, ias: int, mair: int,
         budget: WalkBudget = WalkBudget(), oas: int = 48) -> Walk:
    """Every leaf and table page under `ttbr`; `oas` (the table's output address size) decides
    whether 4TB level-1 blocks exist (64K granule, 52 bits) and which output addresses are
    out of range (a finding, like a table outside RAM)."""
    top = MAX_OAS[granule.size]
    if not granule.shift < ias <= top:
        raise WalkError(f"ias {ias} cannot be walked with a {granule.name} granule "
                        f"(needs {granule.shift} < ias <= {top})")
    if not 0 < oas <= top:
        raise WalkError(f"oas {oas} is not an output size of the {granule.name} granule "
                        f"(up to {top} bits)")
    result = Walk(ttbr, granule, ias, oas)
    if ttbr >> oas:
        result.problems.append(f"ttbr {ttbr:#x} is beyond the table's {oas}-bit output space")
    walker = _Walker(mem, result, mair, budget, time.monotonic() + budget.seconds)
    try:
        _walk_table(walker, ttbr, granule.start_level(ias), 0, granule.root_entries(ias), -1)
    except _BudgetExceeded as exc:
        result.truncated = True
        result.problems.append(str(exc))
    return result


def _walk_table(w: _Walker, addr: int, level: int, base: int, entries: int, parent: int,
                pointer: Descriptor | None = None) -> None:
    result, mem, mair = w.result, w.mem, w.mair
    granule = result.granule
    if addr in w.seen:
        result.problems.append(f"L{level} table at {addr:#x} is reached twice (from the "
                               f"descriptors at {w.seen[addr]:#x} and {parent:#x}): shared or "
                               "cyclic tables, not walked again")
        return
    w.seen[addr] = parent
    w.spend()
    if addr % min(entries * 8, granule.size):
        result.problems.append(f"L{level} table at {addr:#x} is misaligned")
    try:
        data = mem.read(addr, entries * 8)
    except WalkError as exc:
        result.problems.append(f"L{level} table at {addr:#x} (from {parent:#x}) cannot be read: {exc}")
        return
    raws = struct.unpack(f"<{entries}Q", data)
    used = list(compress(range(entries), raws))  # filtered in C: tables are mostly zeros
    step = granule.block_size(level)
    page = TablePage(addr, level, base, entries, sum(raws[i] & 1 for i in used), pointer)
    result.tables.append(page)
    for index in used:
        raw = raws[index]
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
            if desc.address >> result.oas:
                result.problems.append(f"table descriptor at {entry:#x} points beyond the "
                                       f"{result.oas}-bit output space: {desc.bits()}")
            _walk_table(w, desc.address, level + 1, iova, granule.size // 8, entry, desc)
        else:
            if desc.kind == "block" and level not in block_levels(granule, result.oas):
                result.problems.append(f"block at L{level} not allowed with a "
                                       f"{granule.size // 1024}K granule and {result.oas}-bit "
                                       f"output addresses: {desc.bits()}")
            if (desc.address + step - 1) >> result.oas:
                result.problems.append(f"output address beyond the table's {result.oas}-bit "
                                       f"output space: {desc.bits()}")
            if desc.kind == "block" and raw & (step - 1) & ~(granule.size - 1) & ((1 << 48) - 1):
                result.problems.append(f"output address bits below the block size are set: {desc.bits()}")
            w.spend()
            result.leaves.append(Leaf(iova, step, desc.address, level, desc.kind,
                                      decode_mair(mair, desc.attr_index), desc, entry))
