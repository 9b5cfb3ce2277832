"""The page count a walk implies, from the allocator's rules (iommu-pages.c: a power-of-two
number of pages per allocation; io-pgtable-arm: at least 64 bytes), on tables built here."""
import pytest

from harness.pgtable.lpae import GRANULES
from harness.pgtable.pagecount import table_pages
from harness.pgtable.walker import walk

from .tablebuilder import TableBuilder

MAIR = 0xFFFFFFFFF404FF44


@pytest.mark.parametrize("gsize,ias,leaf,pages", [
    # 4K, ias 48: a 4K top table, then one 4K table per level below it
    (0x1000, 48, 0x1000, 1 + 3),
    # 4K, ias 32: a 32-byte top table (4 entries) still takes a whole page
    (0x1000, 32, 0x1000, 1 + 2),
    # 16K, ias 48: a 16-byte top table (2 entries) takes a page, each 16K table 4 pages
    (0x4000, 48, 0x4000, 1 + 3 * 4),
    # 64K, ias 48: a 512-byte top table (64 entries), each 64K table 16 pages
    (0x10000, 48, 0x10000, 1 + 2 * 16),
    (0x10000, 48, 0x2000_0000, 1 + 16),
])
def test_table_pages_counts_allocations_as_the_allocator_does(gsize, ias, leaf, pages):
    granule = GRANULES[gsize]
    tb = TableBuilder(granule, ias)
    tb.map(0, 0x8000_0000, leaf)
    assert table_pages(walk(tb.mem, tb.ttbr, granule, ias, MAIR)) == pages
