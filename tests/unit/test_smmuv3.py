"""The host's SMMUv3 decoder against descriptors built here from the Arm layout (IHI 0070), and
the writable DMA window of the shared-memory mapping."""
from __future__ import annotations

import struct
from pathlib import Path

import pytest

from harness.errors import WalkError
from harness.guest.guestmem import ShmMemory
from harness.pgtable import smmuv3


def words(*dw: int) -> bytes:
    return struct.pack("<8Q", *(list(dw) + [0] * (8 - len(dw))))


def test_ste_fields():
    # V, Config=0b101 (stage 1), S1ContextPtr 0x4123_4540, S1CDMax 0; S1STALLD in dw1 bit 27
    s = smmuv3.decode_ste(words(1 | 0b101 << 1 | 0x4123_4540, 1 << 27))
    assert (s.valid, s.config, s.s1ctxptr, s.s1cdmax, s.s1fmt, s.s1stalld) == \
        (True, "s1", 0x4123_4540, 0, 0, True)
    assert smmuv3.decode_ste(words(1 | 0b100 << 1)).config == "bypass"
    assert smmuv3.decode_ste(words(1)).config == "abort"
    assert smmuv3.decode_ste(words(0b001 << 1)).config.startswith("reserved")
    assert not smmuv3.decode_ste(words(0)).valid


def test_cd_fields():
    d0 = (16 | 0b10 << 6 | 1 << 8 | 1 << 10 | 3 << 12 | 1 << 30 | 1 << 31 | 5 << 32
          | 1 << 41 | 1 << 45 | 1 << 46 | 0x2A << 48)
    c = smmuv3.decode_cd(words(d0, 0x4567_8000 | 0xF, 0, 0xFF44))
    assert (c.t0sz, c.granule, c.irgn0, c.orgn0, c.sh0, c.epd0, c.epd1, c.valid) == \
        (16, 0x4000, 1, 1, 3, False, True, True)
    assert (c.ips_bits, c.aa64, c.r, c.a, c.s, c.ha, c.hd, c.affd, c.asid) == \
        (48, True, True, True, False, False, False, False, 0x2A)
    assert (c.ttb0, c.mair) == (0x4567_8000, 0xFF44)  # TTB0 is bits 51:4
    assert smmuv3.decode_cd(words(0b11 << 6)).granule is None  # reserved TG0
    assert smmuv3.decode_cd(words(1 << 14 | 1 << 35)).epd0


def test_expected_tcr_from_the_geometry():
    t = smmuv3.expected_tcr(39, 0x1000, 44)
    assert (t.t0sz, t.granule, t.ips_bits, t.irgn0, t.orgn0, t.sh0) == (25, 0x1000, 44, 1, 1, 3)
    nc = smmuv3.expected_tcr(48, 0x10000, 48, coherent_walk=False)
    assert (nc.irgn0, nc.orgn0, nc.sh0) == (0, 0, 2)


def test_only_the_dma_window_is_writable(tmp_path: Path):
    ram = tmp_path / "ram"
    ram.write_bytes(bytes(1 << 20))
    base = 0x4000_0000
    mem = ShmMemory(ram, base, 1 << 20, window=(base + (1 << 19), 1 << 19))
    try:
        mem.write(base + (1 << 19) + 8, b"abc")
        assert mem.read(base + (1 << 19) + 8, 3) == b"abc"
        assert ram.read_bytes()[(1 << 19) + 8:(1 << 19) + 11] == b"abc"
        for addr in (base, base + (1 << 19) - 1, base + (1 << 20) - 2):
            with pytest.raises(WalkError):
                mem.write(addr, b"xyz")
    finally:
        mem.close()
    ro = ShmMemory(ram, base, 1 << 20)
    try:
        with pytest.raises(WalkError):
            ro.write(base, b"x")
    finally:
        ro.close()
