"""Paths of io-pgtable-arm the common sequences never reach (issue #14 item 5), for every granule:

- a block mapped where an emptied leaf table still hangs: `arm_lpae_init_pte()` must unmap and
  free that table before it writes the block (the walk shows the block, the page counter shows
  the table gone);
- map and unmap at every level with a pgcount that crosses the end of a table: io-pgtable-arm
  handles at most the entries left in one table per call (`arm_lpae_max_entries`), so the first
  call returns exactly the prefix up to the boundary and the retry the rest, whether the leaves
  are of the unmap's own size or smaller ones under tables it frees;
- `iova_to_phys` at random offsets inside a leaf of every size, not only `+42`.

Every expected value comes from the architecture (entries per table, block sizes per level) and
the C source's one-table-per-call rule; batches keep each phase one write.
"""
from __future__ import annotations

import random

import pytest

from harness.guest.modclient import ModuleClient, Reply, req
from harness.pgtable.lpae import Granule
from harness.pgtable.model import calls, table_span as span_of_table
from harness.pgtable.pagecount import PageCounter, table_pages
from harness.pgtable.tables import GuestTable

pytestmark = pytest.mark.guest

PA = 0x40_0000_0000  # 256 GiB: aligned for every block size, inside oas 48
SETS = {"4K": 0x4020_1000, "16K": 0x0200_4000, "64K": 0x2001_0000}
REGIONS = 256  # a leaked table per region moves the counter far beyond its per-CPU slack


def granule_param(name: str, *rest: object) -> object:
    return pytest.param(name, *rest, id="-".join([name, *map(str, rest)]),
                        marks=pytest.mark.granule(name))


def sizes_of(pgsizes: int) -> list[int]:
    return [1 << b for b in range(64) if pgsizes >> b & 1]


def level_of(granule: Granule, size: int) -> int:
    return next(lvl for lvl in range(4) if granule.block_size(lvl) == size)


def ok(replies: list[Reply], key: str, want: list[int]) -> None:
    got = [(r.ret, r.num(key) if key in r.fields else None) for r in replies]
    assert got == [(0, w) for w in want], [r.line for r in replies][:8]


def map_batch(table: GuestTable, iova: int, paddr: int, size: int, count: int) -> list[str]:
    return [req("map", id=table.id, iova=i, paddr=paddr + (i - iova), pgsize=size, pgcount=n,
                prot="read|write") for i, n in calls(table.granule, iova, size, count)]


def unmap_batch(table: GuestTable, iova: int, size: int, count: int) -> list[str]:
    return [req("unmap", id=table.id, iova=i, pgsize=size, pgcount=n)
            for i, n in calls(table.granule, iova, size, count)]


def expected(table: GuestTable, iova: int, size: int, count: int) -> list[int]:
    return [n * size for _, n in calls(table.granule, iova, size, count)]


CASES = [granule_param("4K", 0x20_0000), granule_param("4K", 0x4000_0000),
         granule_param("16K", 0x200_0000), granule_param("64K", 0x2000_0000)]


@pytest.mark.parametrize("gname,block", CASES)
def test_a_block_over_an_emptied_table_frees_the_table(pgtable, module: ModuleClient, ssh,
                                                       gname, block):
    """Map one small page in each of REGIONS block-sized regions (io-pgtable allocates the
    tables below), unmap them (the tables stay, empty: leaf unmaps never free tables), then
    map blocks over all of them with one pgcount that crosses the parent table's end."""
    with PageCounter(ssh) as pages:
        _block_over_emptied_tables(pgtable, module, pages, gname, block)


def _block_over_emptied_tables(pgtable, module: ModuleClient, pages: PageCounter, gname: str,
                               block: int) -> None:
    base = pages.read()
    table = pgtable(pgsizes=SETS[gname])
    granule, small = table.granule, table.granule.size
    parent = span_of_table(granule, block)
    start = parent - REGIONS // 2 * block  # half the regions below a parent boundary
    regions = [start + k * block for k in range(REGIONS)]
    ok(module.batch([req("map", id=table.id, iova=r + small, paddr=PA, pgsize=small, pgcount=1,
                         prot="read") for r in regions]), "mapped", [small] * REGIONS)
    ok(module.batch([req("unmap", id=table.id, iova=r + small, pgsize=small, pgcount=1)
                     for r in regions]), "unmapped", [small] * REGIONS)
    emptied = table.walk()
    level = level_of(granule, block)
    assert emptied.empty and emptied.problems == [], emptied.problems
    hanging = [t for t in emptied.tables if t.level == level + 1]  # empty, or over empty ones
    assert sorted(t.iova for t in hanging) == regions, "the emptied tables are not all there"
    assert all(t.valid == 0 for t in emptied.tables if t.level == 3), "a leaf table not empty"
    held = pages.read()
    assert abs(held.value - base.value - table_pages(emptied)) <= base.slack + held.slack, \
        (base, held, table_pages(emptied))

    ok(module.batch(map_batch(table, start, PA, block, REGIONS)), "mapped",
       expected(table, start, block, REGIONS))
    w = table.walk()
    assert w.problems == [], w.problems
    assert [(leaf.iova, leaf.size, leaf.level, leaf.kind, leaf.output) for leaf in w.leaves] == \
        [(r, block, level, "block", PA + r - start) for r in regions], w.leaves[:3]
    below = [t for t in w.tables if t.level > level]
    assert below == [], f"{len(below)} tables still below the blocks, e.g. {below[:2]}"
    after = pages.read()
    leaked = after.value - base.value - table_pages(w)
    assert abs(leaked) <= base.slack + after.slack, \
        f"nr_iommu_pages is {leaked} pages above what the walk holds ({table_pages(w)} " \
        f"pages; slack {base.slack + after.slack}): the emptied tables were not freed"


LEVEL_CASES = [granule_param(name, size) for name, bitmap in SETS.items()
               for size in sizes_of(bitmap)]


@pytest.mark.parametrize("gname,size", LEVEL_CASES)
def test_map_and_unmap_across_a_table_end_at_every_level(pgtable, module, gname, size):
    """Leaves of `size` on both sides of the end of their table: each call handles one table's
    entries, so the first call returns exactly the prefix up to the boundary."""
    table = pgtable(pgsizes=SETS[gname])
    span = span_of_table(table.granule, size)
    start, count = span - 3 * size, 6
    ok(module.batch(map_batch(table, start, PA, size, count)), "mapped",
       [3 * size, 3 * size])
    w = table.walk()
    assert [(leaf.iova, leaf.size, leaf.output) for leaf in w.leaves] == \
        [(start + i * size, size, PA + i * size) for i in range(count)], w.problems
    ok(module.batch(unmap_batch(table, start, size, count)), "unmapped", [3 * size, 3 * size])
    assert table.walk().empty


@pytest.mark.parametrize("gname", [granule_param(n) for n in SETS])
def test_unmap_of_a_larger_size_frees_tables_across_a_table_end(pgtable, module, gname):
    """Small pages filling two regions of the next size up, one each side of the end of the
    parent table; an unmap of the larger size frees the leaf tables, one per call."""
    table = pgtable(pgsizes=SETS[gname])
    granule = table.granule
    small, large = granule.size, granule.block_size(2)
    per = large // small
    start = span_of_table(granule, large) - large
    ok(module.batch(map_batch(table, start, PA, small, 2 * per)), "mapped", [large, large])
    full = table.walk()
    assert len(full.leaves) == 2 * per and len([t for t in full.tables if t.level == 3]) == 2
    ok(module.batch(unmap_batch(table, start, large, 2)), "unmapped", [large, large])
    w = table.walk()
    assert w.empty and [t for t in w.tables if t.level == 3] == [], w.tables


@pytest.mark.parametrize("gname", [granule_param(n) for n in SETS])
def test_iova_to_phys_at_random_offsets_inside_every_leaf_size(pgtable, module, gname, request):
    table = pgtable(pgsizes=SETS[gname])
    rng = random.Random(request.node.nodeid)  # the same offsets every run of this test
    leaves = []
    for k, size in enumerate(sizes_of(table.info.pgsizes)):
        iova = (2 * k + 1) * table.granule.block_size(1)  # each leaf under its own L1 entry
        paddr = PA + rng.randrange(0, 1 << 36, size)
        leaves.append((iova, paddr, size))
    ok(module.batch([req("map", id=table.id, iova=i, paddr=p, pgsize=s, pgcount=1,
                         prot="read") for i, p, s in leaves]), "mapped", [s for _, _, s in leaves])
    w = table.walk()
    probes = []
    for iova, paddr, size in leaves:
        offsets = [rng.randrange(size) for _ in range(32)] + [0, size - 1]
        probes += [(iova + off, paddr + off) for off in offsets]
        probes += [(iova - 1, 0), (iova + size, 0)]  # just outside: nothing mapped there
    replies = module.batch([req("iova_to_phys", id=table.id, iova=i) for i, _ in probes])
    wrong = [(hex(i), hex(want), hex(r.num("phys")), hex(w.translate(i) or 0))
             for (i, want), r in zip(probes, replies)
             if r.num("phys") != want or (w.translate(i) or 0) != want]
    assert not wrong, f"(iova, expected, iova_to_phys, host walk): {wrong[:8]}"
