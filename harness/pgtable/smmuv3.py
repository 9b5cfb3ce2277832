"""The SMMUv3's live configuration, decoded on the host from its registers and guest memory.

Written from the Arm SMMUv3 architecture (IHI 0070: STRTAB_BASE, STE, CD field layouts),
independently of the guest module that writes them, so the suite can check that the device
really walks the table the host walker walks, with the T0SZ/TG0/IPS/cacheability the table's
ias, granule and oas imply.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass

from ..errors import WalkError
from ..guest.guestmem import GuestMemory
from ..guest.qmp import QmpChannel

SMMU_BASE = 0x0905_0000  # QEMU virt's SMMUv3 (DT node compatible "arm,smmu-v3")
IDR5, CR0, STRTAB_BASE, STRTAB_BASE_CFG = 0x14, 0x20, 0x80, 0x88
STE_BYTES, CD_BYTES = 64, 64
CONFIGS = {0b000: "abort", 0b100: "bypass", 0b101: "s1", 0b110: "s2", 0b111: "nested"}
GRANULE_OF_TG0 = {0b00: 1 << 12, 0b01: 1 << 16, 0b10: 1 << 14}
IPS_BITS = {0: 32, 1: 36, 2: 40, 3: 42, 4: 44, 5: 48, 6: 52}
ADDR_51_6 = ((1 << 52) - 1) & ~0x3F
ADDR_51_4 = ((1 << 52) - 1) & ~0xF


def bits(value: int, hi: int, lo: int) -> int:
    return (value >> lo) & ((1 << (hi - lo + 1)) - 1)


@dataclass(frozen=True)
class StreamTable:
    base: int
    log2size: int
    fmt: int  # 0 linear, 1 two-level
    smmu_enabled: bool


@dataclass(frozen=True)
class Ste:
    valid: bool
    config: str
    s1fmt: int
    s1ctxptr: int
    s1cdmax: int
    s1stalld: bool


@dataclass(frozen=True)
class Cd:
    valid: bool
    t0sz: int
    granule: int | None  # None: a reserved TG0 encoding
    irgn0: int
    orgn0: int
    sh0: int
    epd0: bool
    epd1: bool
    ips_bits: int | None
    affd: bool
    aa64: bool
    ha: bool
    hd: bool
    s: bool
    r: bool
    a: bool
    asid: int
    ttb0: int
    mair: int


def decode_ste(raw: bytes) -> Ste:
    dw = struct.unpack("<8Q", raw[:STE_BYTES])
    cfg = bits(dw[0], 3, 1)
    return Ste(valid=bool(dw[0] & 1), config=CONFIGS.get(cfg, f"reserved({cfg:#b})"),
               s1fmt=bits(dw[0], 5, 4), s1ctxptr=dw[0] & ADDR_51_6, s1cdmax=bits(dw[0], 63, 59),
               s1stalld=bool(bits(dw[1], 27, 27)))


def decode_cd(raw: bytes) -> Cd:
    dw = struct.unpack("<8Q", raw[:CD_BYTES])
    d0 = dw[0]
    return Cd(valid=bool(bits(d0, 31, 31)), t0sz=bits(d0, 5, 0),
              granule=GRANULE_OF_TG0.get(bits(d0, 7, 6)), irgn0=bits(d0, 9, 8),
              orgn0=bits(d0, 11, 10), sh0=bits(d0, 13, 12), epd0=bool(bits(d0, 14, 14)),
              epd1=bool(bits(d0, 30, 30)), ips_bits=IPS_BITS.get(bits(d0, 34, 32)),
              affd=bool(bits(d0, 35, 35)), aa64=bool(bits(d0, 41, 41)),
              hd=bool(bits(d0, 42, 42)), ha=bool(bits(d0, 43, 43)), s=bool(bits(d0, 44, 44)),
              r=bool(bits(d0, 45, 45)), a=bool(bits(d0, 46, 46)), asid=bits(d0, 63, 48),
              ttb0=dw[1] & ADDR_51_4, mair=dw[3])


def stream_table(qmp: QmpChannel) -> StreamTable:
    """STRTAB_BASE/STRTAB_BASE_CFG/CR0, read from the SMMU's registers at their own width."""
    base = qmp.read_register(SMMU_BASE + STRTAB_BASE, 8)
    cfg = qmp.read_register(SMMU_BASE + STRTAB_BASE_CFG, 4)
    cr0 = qmp.read_register(SMMU_BASE + CR0, 4)
    return StreamTable(base=base & ADDR_51_6, log2size=bits(cfg, 5, 0), fmt=bits(cfg, 17, 16),
                       smmu_enabled=bool(cr0 & 1))


def implemented_oas(qmp: QmpChannel) -> int:
    """The output address size the SMMU implements (IDR5.OAS), in bits: a CD's IPS above it
    acts as this size."""
    oas = IPS_BITS.get(qmp.read_register(SMMU_BASE + IDR5, 4) & 7)
    if oas is None:
        raise WalkError("SMMU_IDR5.OAS holds a reserved value")
    return oas


def ste(mem: GuestMemory, table: StreamTable, sid: int) -> Ste:
    if table.fmt != 0:
        raise WalkError(f"two-level stream table (FMT {table.fmt}) not decoded here")
    if sid >> table.log2size:
        raise WalkError(f"stream {sid:#x} is beyond the stream table's 2^{table.log2size} entries")
    return decode_ste(mem.read(table.base + sid * STE_BYTES, STE_BYTES))


def cd(mem: GuestMemory, entry: Ste) -> Cd:
    return decode_cd(mem.read(entry.s1ctxptr, CD_BYTES))


def stream_ids(qmp: QmpChannel, vendor: int, device: int) -> list[int]:
    """The requester IDs (= StreamIDs on QEMU virt's identity iommu-map) of the PCI devices
    with these ids, from QEMU's own PCI topology."""
    return sorted(int(d["bus"]) << 8 | int(d["slot"]) << 3 | int(d["function"])
                  for d in qmp.pci_devices()
                  if d.get("id", {}).get("vendor") == vendor
                  and d.get("id", {}).get("device") == device)


@dataclass(frozen=True)
class Tcr:
    """What the architecture makes of a stage-1 table's geometry (VMSAv8-64 TCR_ELx fields)."""

    t0sz: int
    granule: int
    ips_bits: int
    irgn0: int
    orgn0: int
    sh0: int


WBWA, NON_CACHEABLE, INNER_SHAREABLE, OUTER_SHAREABLE = 1, 0, 3, 2


def expected_tcr(ias: int, granule: int, oas: int, coherent_walk: bool = True) -> Tcr:
    """T0SZ = 64 - ias; TG0 is the granule; IPS covers oas; a coherent walk is inner
    shareable write-back write-allocate, a non-coherent one non-cacheable, outer shareable."""
    if coherent_walk:
        return Tcr(64 - ias, granule, oas, WBWA, WBWA, INNER_SHAREABLE)
    return Tcr(64 - ias, granule, oas, NON_CACHEABLE, NON_CACHEABLE, OUTER_SHAREABLE)
