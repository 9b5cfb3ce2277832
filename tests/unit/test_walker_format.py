"""The walker's decode of the format's less common fields, on tables built from the Arm ARM's
layout: NS and NSTable (quirk ARM_NS), DBM (quirk ARM_HD), 52-bit output addresses with the 64K
granule (FEAT_LPA: OA[51:48] in descriptor bits [15:12]) and the 4TB level-1 block they bring."""
import pytest

from harness.errors import WalkError
from harness.pgtable.lpae import GRANULES, decode
from harness.pgtable.walker import walk

from .tablebuilder import AF, DBM, NG, NS, NSTABLE, TableBuilder

MAIR = 0xFFFFFFFFF404FF44
G4K, G16K, G64K = GRANULES[0x1000], GRANULES[0x4000], GRANULES[0x10000]
T4 = 1 << 42  # a level-1 block with the 64K granule
RO = 1 << 7


@pytest.mark.parametrize("granule", [G4K, G16K, G64K], ids=lambda g: g.name)
def test_ns_on_leaves_and_nstable_on_tables(granule):
    tb = TableBuilder(granule, 48, table_bits=NSTABLE)
    tb.map(0, 0x8000_0000, granule.size, AF | NG | NS)
    tb.map(granule.block_size(2), 0x9000_0000 & -granule.block_size(2), granule.block_size(2),
           AF | NG)
    w = walk(tb.mem, tb.ttbr, granule, 48, MAIR)
    assert w.problems == []
    assert [leaf.desc.ns for leaf in sorted(w.leaves, key=lambda l: l.iova)] == [True, False]
    below_root = [t for t in w.tables if t.addr != tb.ttbr]
    assert below_root and all(t.parent is not None and t.parent.nstable for t in below_root)
    root = next(t for t in w.tables if t.addr == tb.ttbr)
    assert root.parent is None
    assert "nstable=1" in below_root[0].parent.bits()


def test_nstable_clear_and_other_table_attributes():
    tb = TableBuilder(G4K, 48, table_bits=(0b10 << 61) | (1 << 60))
    tb.map(0, 0x8000_0000, 0x1000)
    w = walk(tb.mem, tb.ttbr, G4K, 48, MAIR)
    pointer = next(t.parent for t in w.tables if t.parent is not None)
    assert not pointer.nstable and pointer.aptable == 0b10 and pointer.xntable == (True, False)


@pytest.mark.parametrize("granule", [G4K, G16K, G64K], ids=lambda g: g.name)
def test_dbm_decoded_with_the_write_permission(granule):
    tb = TableBuilder(granule, 48)
    tb.map(0, 0x8000_0000, granule.size, AF | NG | DBM)  # writable, dirty-tracked
    tb.map(granule.size, 0x8000_0000 + granule.size, granule.size, AF | NG | RO)
    by_iova = {leaf.iova: leaf.desc for leaf in walk(tb.mem, tb.ttbr, granule, 48, MAIR).leaves}
    assert by_iova[0].dbm and not by_iova[0].read_only
    assert not by_iova[granule.size].dbm and by_iova[granule.size].read_only
    assert "dbm=1" in by_iova[0].bits()


@pytest.mark.parametrize("size", [0x1_0000, 0x2000_0000, T4])
def test_52_bit_output_addresses_decode_exactly(size):
    paddr = ((0xA << 48) | (0x3456 << 29)) & -size  # PA[51:48] = 0xA, lower bits too
    assert paddr >> 48 == 0xA
    tb = TableBuilder(G64K, 52)
    slot = tb.map(T4 * 3, paddr, size, AF | NG)
    raw = int.from_bytes(tb.mem.read(slot, 8), "little")
    assert (raw >> 12) & 0xF == 0xA and (raw >> 48) & 0xF == 0  # the architecture's packing
    w = walk(tb.mem, tb.ttbr, G64K, 52, MAIR, oas=52)
    assert w.problems == []
    (leaf,) = w.leaves
    assert (leaf.iova, leaf.size, leaf.output) == (T4 * 3, size, paddr)
    assert leaf.level == {0x1_0000: 3, 0x2000_0000: 2, T4: 1}[size]
    assert w.translate(T4 * 3 + 0x1234) == paddr + 0x1234


def test_4tb_block_needs_52_bit_output_addresses():
    tb = TableBuilder(G64K, 48)
    tb.map(T4, 1 << 46, T4, AF | NG)
    assert walk(tb.mem, tb.ttbr, G64K, 48, MAIR, oas=52).problems == []
    assert any("not allowed" in p for p in walk(tb.mem, tb.ttbr, G64K, 48, MAIR, oas=48).problems)


@pytest.mark.parametrize("granule,oas", [(G64K, 48), (G64K, 40), (G4K, 40), (G16K, 36)],
                         ids=lambda v: getattr(v, "name", v))
def test_output_addresses_beyond_oas_are_findings(granule, oas):
    tb = TableBuilder(granule, 48)
    tb.map(0, 1 << oas, granule.size, AF | NG)  # one page just past the output space
    tb.map(granule.size, (1 << oas) - granule.size, granule.size, AF | NG)  # the last page: fine
    problems = walk(tb.mem, tb.ttbr, granule, 48, MAIR, oas=oas).problems
    assert len(problems) == 1 and "beyond the table's" in problems[0], problems


def test_tables_and_ttbr_beyond_oas_or_ram_are_findings():
    tb = TableBuilder(G64K, 52)
    slot = tb.map(0, 0x8000_0000, 0x1_0000)
    root_slot = tb.ttbr  # the L1 entry that leads to the L2 table of iova 0
    pointer = int.from_bytes(tb.mem.read(root_slot, 8), "little")
    tb.poke(root_slot, pointer | (0x1 << 12))  # the L2 table now sits at 2^48 + its address
    w = walk(tb.mem, tb.ttbr, G64K, 52, MAIR, oas=48)
    assert any("points beyond the 48-bit" in p for p in w.problems), w.problems
    assert slot and w.leaves == []  # (the fake's memory there reads as zeros)
    w = walk(tb.mem, 1 << 50, G64K, 52, MAIR, oas=48)
    assert any("ttbr" in p and "beyond" in p for p in w.problems)


def test_ias_52_with_the_64k_granule_walks_from_a_1024_entry_level_1():
    tb = TableBuilder(G64K, 52)
    top = (1 << 52) - 0x1_0000
    tb.map(top, 0x8000_0000, 0x1_0000)
    w = walk(tb.mem, tb.ttbr, G64K, 52, MAIR, oas=52)
    assert w.problems == [] and [leaf.iova for leaf in w.leaves] == [top]
    root = next(t for t in w.tables if t.addr == tb.ttbr)
    assert (root.level, root.entries) == (1, 1024)
    with pytest.raises(WalkError):
        walk(tb.mem, tb.ttbr, G4K, 52, MAIR)  # 4K stops at 48 bits without FEAT_LPA2
    with pytest.raises(WalkError):
        walk(tb.mem, tb.ttbr, G16K, 48, MAIR, oas=52)


def test_table_descriptor_address_holds_52_bits_with_64k():
    raw = 0x4001_0000 | (0x5 << 12) | 3 | NSTABLE
    d = decode(raw, 1, G64K)
    assert d.kind == "table" and d.address == (5 << 48) | 0x4001_0000 and d.nstable
    assert decode(0x4001_0000 | (0x5 << 12) | 3, 1, G4K).address == 0x4001_5000


def test_dump_shows_ns_nstable_and_dbm():
    from harness.pgtable.dump import dump, format_dump

    tb = TableBuilder(G4K, 48, table_bits=NSTABLE)
    tb.map(0x1000, 0x8000_0000, 0x1000, AF | NG | NS | DBM)
    text = format_dump(dump(1, 48, walk(tb.mem, tb.ttbr, G4K, 48, MAIR)))
    assert text.count("NSTable") == 3  # L0 -> L1 -> L2 -> L3: three table descriptors
    assert "NS=1 DBM=1" in text and "ns=1 dbm=1" in text
