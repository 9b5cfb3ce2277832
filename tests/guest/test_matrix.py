"""The io-pgtable-arm selftest matrix, checked from outside: page-size sets x (ias <= oas) pairs,
each page size at the start and at the last largest page of the input space."""
from __future__ import annotations

import itertools

import pytest

from harness.guest.modclient import req

pytestmark = pytest.mark.guest

SETS = {"4K|2M|1G": 0x4020_1000, "16K|32M": 0x0200_4000, "64K|512M": 0x2001_0000}
BITS = (32, 36, 40, 42, 44, 48)
CASES = [(name, ias, oas) for name in SETS for ias, oas in itertools.product(BITS, BITS) if ias <= oas]


@pytest.mark.parametrize("name,ias,oas", [
    pytest.param(n, i, o, id=f"{n}-ias{i}-oas{o}", marks=pytest.mark.granule(n.split("|")[0]))
    for n, i, o in CASES])
def test_matrix(pgtable, module, dma_bench, name, ias, oas):
    table = pgtable(ias=ias, oas=oas, pgsizes=SETS[name])
    sizes = [1 << b for b in range(64) if table.info.pgsizes >> b & 1]
    largest = sizes[-1]
    for size in sizes:
        # each page size at the start of the input space and at its last largest page,
        # pointing at the start and at the last largest page of the output space
        placements = [(0, (1 << oas) - largest, size), ((1 << ias) - largest, 0, size)]
        # one batch: both maps, then the kernel's translation of each (the walk comes after,
        # of the same table: nothing changes it in between)
        replies = module.batch([req("map", id=table.id, iova=i, paddr=p, pgsize=s, pgcount=1,
                                    prot="read|write") for i, p, s in placements]
                               + [req("iova_to_phys", id=table.id, iova=i + 42)
                                  for i, _, _ in placements])
        maps, phys = replies[:2], replies[2:]
        assert [(r.ret, r.num("mapped")) for r in maps] == [(0, size)] * 2, maps
        w = table.walk()
        assert w.problems == [], w.problems
        for (iova, paddr, _), reply in zip(placements, phys):
            leaf = w.leaf_at(iova)
            assert leaf is not None and (leaf.iova, leaf.size) == (iova, size), \
                f"iova {iova:#x}: {leaf.describe() if leaf else 'no leaf'}"
            assert w.translate(iova + 42) == paddr + 42 == reply.num("phys"), leaf.describe()
        # the third oracle, the SMMU walking the table for a device: each placement, and the
        # iova just past the first (unmapped), for the smallest page (the deepest walk) and the
        # largest (the top-level block): 6 probes
        if dma_bench is not None and size in (sizes[0], sizes[-1]):
            probes = [i + 42 for i, _, _ in placements] + [placements[0][0] + size]
            assert dma_bench.disagreements(table, w, probes) == []
        unmapped = module.batch([req("unmap", id=table.id, iova=i, pgsize=size, pgcount=1)
                                 for i, _, _ in placements])
        assert [r.num("unmapped") for r in unmapped] == [size, size]
        assert table.walk().empty
