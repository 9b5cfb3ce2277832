import pytest

from harness.pgtable.lpae import GRANULES
from harness.pgtable.walker import walk

from .tablebuilder import AF, NG, TableBuilder

MAIR = 0xFFFFFFFFF404FF44
G4K, G16K, G64K = GRANULES[0x1000], GRANULES[0x4000], GRANULES[0x10000]


@pytest.mark.parametrize("granule,ias,sizes", [
    (G4K, 48, [0x1000, 0x20_0000, 0x4000_0000]),
    (G4K, 32, [0x1000, 0x20_0000, 0x4000_0000]),
    (G16K, 48, [0x4000, 0x200_0000]),
    (G16K, 36, [0x4000, 0x200_0000]),
    (G64K, 48, [0x1_0000, 0x2000_0000]),
    (G64K, 42, [0x1_0000, 0x2000_0000]),
])
def test_walk_finds_every_leaf_with_its_level(granule, ias, sizes):
    tb = TableBuilder(granule, ias)
    expected = []
    top = 1 << ias
    for i, size in enumerate(sizes):
        # spread over the input space; the largest size also at its last page
        iova = top - size if i == len(sizes) - 1 else i * (top // 4)
        paddr = 0x8000_0000_0 + size * (i + 3)
        tb.map(iova, paddr, size)
        expected.append((iova, size, paddr))
    w = walk(tb.mem, tb.ttbr, granule, ias, MAIR)
    assert w.problems == []
    found = sorted((leaf.iova, leaf.size, leaf.output) for leaf in w.leaves)
    assert found == sorted(expected)
    for iova, size, paddr in expected:
        assert w.translate(iova + 42) == paddr + 42
        leaf = w.leaf_at(iova)
        assert leaf is not None and leaf.kind == ("page" if size == granule.size else "block")
        assert granule.block_size(leaf.level) == size
    assert w.translate(top // 4 - 0x1000 if len(sizes) > 2 else top // 2) is None


def test_permissions_and_memory_type_come_from_the_descriptor():
    tb = TableBuilder(G4K, 48)
    tb.map(0x1000, 0x9000_0000, 0x1000, AF | NG | (3 << 8) | (1 << 2) | (1 << 7) | (3 << 53))
    (leaf,) = walk(tb.mem, tb.ttbr, G4K, 48, MAIR).leaves
    assert leaf.desc.read_only and not leaf.desc.unprivileged
    assert leaf.desc.pxn and leaf.desc.uxn
    assert leaf.memtype.cacheable and leaf.desc.shareability == "inner-shareable"


def test_malformed_entries_are_reported_not_hidden():
    tb = TableBuilder(G4K, 48)
    slot = tb.map(0x1000, 0x9000_0000, 0x1000)
    tb.poke(slot + 8, 0x9000_1001)  # L3 descriptor with bit 1 clear: reserved
    tb.poke(slot + 16, 0x9000_2000)  # non-zero but invalid
    w = walk(tb.mem, tb.ttbr, G4K, 48, MAIR)
    assert len(w.leaves) == 1
    assert any("reserved L3" in p for p in w.problems)
    assert any("non-zero invalid" in p for p in w.problems)


def test_block_with_low_output_bits_and_l1_block_on_64k_are_problems():
    tb = TableBuilder(G4K, 48)
    tb.map(0x20_0000, 0x4000_0000 | 0x1000, 0x20_0000)  # 2M block whose OA is 4K-aligned only
    assert any("below the block size" in p for p in walk(tb.mem, tb.ttbr, G4K, 48, MAIR).problems)
    tb64 = TableBuilder(G64K, 48)
    l1 = tb64.ttbr + 8 * 0
    tb64.poke(l1, 0x40_0000_0000 | AF | 1)  # 4T block at L1: not allowed without 52-bit
    assert any("not allowed" in p for p in walk(tb64.mem, tb64.ttbr, G64K, 48, MAIR).problems)


def test_empty_tables_are_listed():
    tb = TableBuilder(G4K, 48)
    slot = tb.map(0x1000, 0x9000_0000, 0x1000)
    tb.poke(slot, 0)
    w = walk(tb.mem, tb.ttbr, G4K, 48, MAIR)
    assert w.empty and len(w.empty_tables()) == 1 and w.empty_tables()[0].level == 3
