"""ARM VMSAv8-64 stage-1 (LPAE) descriptors and MAIR, decoded from the Arm architecture alone.

Nothing here comes from the kernel: bit positions are those of the Arm ARM (D8.3, "Translation
table descriptor formats"), so the decoder can disagree with io-pgtable-arm when it is wrong.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

MAX_LEVEL = 3


@dataclass(frozen=True)
class Granule:
    size: int

    @property
    def name(self) -> str:
        return f"{self.size // 1024}K"

    @property
    def shift(self) -> int:
        return self.size.bit_length() - 1

    @property
    def bits_per_level(self) -> int:
        return self.shift - 3  # 8-byte descriptors

    def block_size(self, level: int) -> int:
        """Bytes mapped by one entry at `level` (a page at level 3)."""
        return 1 << (self.shift + self.bits_per_level * (MAX_LEVEL - level))

    def start_level(self, ias: int) -> int:
        levels = -(-(ias - self.shift) // self.bits_per_level)
        return MAX_LEVEL + 1 - levels

    def root_entries(self, ias: int) -> int:
        """Entries in the top-level table (fewer than a page's worth for small ias)."""
        start = self.start_level(ias)
        return 1 << (ias - self.shift - self.bits_per_level * (MAX_LEVEL - start))

    def output_address(self, raw: int, level: int) -> int:
        """OA from a block/page descriptor; with 64K granules bits [15:12] hold OA[51:48]."""
        low = (raw & ((1 << 48) - 1)) & ~(self.block_size(level) - 1)
        if self.size == 0x10000:
            low |= ((raw >> 12) & 0xF) << 48
        return low

    def table_address(self, raw: int) -> int:
        addr = (raw & ((1 << 48) - 1)) & ~(self.size - 1)
        if self.size == 0x10000:
            addr |= ((raw >> 12) & 0xF) << 48
        return addr


GRANULES = {0x1000: Granule(0x1000), 0x4000: Granule(0x4000), 0x10000: Granule(0x10000)}
GRANULE_NAMES = tuple(g.name for g in GRANULES.values())  # "4K", "16K", "64K"
DEFAULT_GRANULE = "4K"  # what a table is made with unless a test says otherwise


def granule_for(pgsize_bitmap: int) -> Granule:
    """The translation granule is the smallest page size in the table's bitmap."""
    smallest = pgsize_bitmap & -pgsize_bitmap
    if smallest not in GRANULES:
        raise ValueError(f"pgsize bitmap {pgsize_bitmap:#x} has no 4K/16K/64K granule")
    return GRANULES[smallest]


@dataclass(frozen=True)
class MemType:
    """One MAIR attribute, decoded (Arm ARM MAIR_ELx.Attr<n>)."""

    raw: int
    kind: str  # "device" or "normal"
    device: str = ""  # nGnRnE, nGnRE, nGRE, GRE
    outer: str = ""  # wb, wt, nc (+ "-transient")
    inner: str = ""

    def __str__(self) -> str:
        if self.kind == "device":
            return f"Device-{self.device} ({self.raw:#04x})"
        return f"Normal outer={self.outer} inner={self.inner} ({self.raw:#04x})"

    @property
    def cacheable(self) -> bool:
        return self.kind == "normal" and self.inner.startswith("wb") and self.outer.startswith("wb")


def _cache_policy(nibble: int) -> str:
    if nibble == 0b0100:
        return "nc"
    kind = {0b11: "wb", 0b10: "wt", 0b01: "wb-transient", 0b00: "wt-transient"}[nibble >> 2]
    alloc = ("r" if nibble & 2 else "") + ("w" if nibble & 1 else "")
    return f"{kind}{'-' + alloc + 'a' if alloc else ''}"


@lru_cache(maxsize=1024)  # a walk asks once per leaf, of a handful of (mair, index) pairs
def decode_mair(mair: int, index: int) -> MemType:
    attr = (mair >> (8 * index)) & 0xFF
    if attr & 0xF0 == 0:
        if attr & 0x3 != 0:
            return MemType(attr, "device", device="UNPREDICTABLE")
        return MemType(attr, "device", device=("nGnRnE", "nGnRE", "nGRE", "GRE")[attr >> 2])
    if attr & 0x0F == 0:
        return MemType(attr, "normal", outer=_cache_policy(attr >> 4), inner="UNPREDICTABLE")
    return MemType(attr, "normal", outer=_cache_policy(attr >> 4), inner=_cache_policy(attr & 0xF))


@dataclass(frozen=True)
class Descriptor:
    """Every architectural field of one 64-bit descriptor at a given level."""

    raw: int
    level: int
    kind: str  # "invalid", "table", "block", "page", "reserved"
    address: int  # output address (block/page) or next-level table address
    attr_index: int
    ns: bool
    ap: int  # AP[2:1]
    sh: int
    af: bool
    ng: bool
    dbm: bool
    contiguous: bool
    pxn: bool
    uxn: bool
    software: int  # bits [58:55]
    table_attrs: int  # bits [63:59] of a table descriptor

    @property
    def read_only(self) -> bool:
        return bool(self.ap & 0b10)

    @property
    def unprivileged(self) -> bool:
        """AP[1]: accessible at EL0 (an unprivileged transaction)."""
        return bool(self.ap & 0b01)

    @property
    def nstable(self) -> bool:
        """NSTable (table descriptor bit 63): every lookup below is Non-secure."""
        return bool(self.table_attrs & 0b10000)

    @property
    def aptable(self) -> int:
        """APTable (table descriptor bits [62:61]): limits on the permissions below."""
        return (self.table_attrs >> 2) & 0b11

    @property
    def xntable(self) -> tuple[bool, bool]:
        """(UXNTable, PXNTable): table descriptor bits 60 and 59."""
        return bool(self.table_attrs & 0b10), bool(self.table_attrs & 0b1)

    @property
    def shareability(self) -> str:
        return ("non-shareable", "reserved", "outer-shareable", "inner-shareable")[self.sh]

    def bits(self) -> str:
        """A compact line for failure messages."""
        if self.kind == "table":
            return (f"table L{self.level} raw={self.raw:#018x} addr={self.address:#x} "
                    f"nstable={int(self.nstable)} aptable={self.aptable:#04b}")
        if self.kind == "invalid":
            return f"{self.kind} raw={self.raw:#018x} addr={self.address:#x}"
        return (f"{self.kind} L{self.level} raw={self.raw:#018x} oa={self.address:#x} "
                f"attridx={self.attr_index} ap={self.ap:#04b}({'ro' if self.read_only else 'rw'},"
                f"{'el0' if self.unprivileged else 'priv'}) sh={self.shareability} "
                f"af={int(self.af)} ng={int(self.ng)} pxn={int(self.pxn)} uxn={int(self.uxn)} "
                f"ns={int(self.ns)} dbm={int(self.dbm)} cont={int(self.contiguous)}")


def decode(raw: int, level: int, granule: Granule) -> Descriptor:
    if not raw & 1:
        kind = "invalid"
    elif level == MAX_LEVEL:
        kind = "page" if raw & 2 else "reserved"
    else:
        kind = "table" if raw & 2 else "block"
    if kind == "table":
        address = granule.table_address(raw)
    elif kind in ("block", "page"):
        address = granule.output_address(raw, level)
    else:
        address = 0
    # A walk decodes every descriptor of every table it reads (hundreds of thousands in a
    # run): the fields go straight into the frozen instance's __dict__, which is what its
    # generated __init__ does one object.__setattr__ at a time, at twice the cost.
    desc = object.__new__(Descriptor)
    desc.__dict__.update(
        raw=raw, level=level, kind=kind, address=address,
        attr_index=(raw >> 2) & 0x7, ns=bool(raw >> 5 & 1), ap=(raw >> 6) & 0x3,
        sh=(raw >> 8) & 0x3, af=bool(raw >> 10 & 1), ng=bool(raw >> 11 & 1),
        dbm=bool(raw >> 51 & 1), contiguous=bool(raw >> 52 & 1), pxn=bool(raw >> 53 & 1),
        uxn=bool(raw >> 54 & 1), software=(raw >> 55) & 0xF, table_attrs=(raw >> 59) & 0x1F)
    return desc
