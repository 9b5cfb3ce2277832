"""First guest tests: one leaf of each size and granule, seen from the host walk and from the
kernel's iova_to_phys; permissions and memory type decoded from the descriptor; unmap empties."""
from __future__ import annotations

import pytest

from harness.guest.modclient import Prot
from harness.pgtable.walker import Walk

pytestmark = pytest.mark.guest

SET_4K, SET_16K, SET_64K = 0x4020_1000, 0x0200_4000, 0x2001_0000
PADDR = 0x40_0000_0000  # 256 GiB: aligned for every block size, inside oas 48


def leaves(w: Walk) -> str:
    return "\n".join(leaf.describe() for leaf in w.leaves) or "(no leaves)"


@pytest.mark.parametrize("pgsizes,size,level,kind", [
    (SET_4K, 0x1000, 3, "page"), (SET_4K, 0x20_0000, 2, "block"), (SET_4K, 0x4000_0000, 1, "block"),
    pytest.param(SET_16K, 0x4000, 3, "page", id="16K", marks=pytest.mark.granule("16K")),
    pytest.param(SET_16K, 0x200_0000, 2, "block", id="32M", marks=pytest.mark.granule("16K")),
    pytest.param(SET_64K, 0x1_0000, 3, "page", id="64K", marks=pytest.mark.granule("64K")),
    pytest.param(SET_64K, 0x2000_0000, 2, "block", id="512M", marks=pytest.mark.granule("64K")),
], ids=["4K", "2M", "1G", None, None, None, None])
def test_one_leaf_walks_and_translates(pgtable, pgsizes, size, level, kind):
    table = pgtable(pgsizes=pgsizes)
    assert table.info.pgsizes == pgsizes
    iova = 4 * size
    result = table.map(iova, PADDR, size)
    assert (result.ret, result.mapped) == (0, size), result
    w = table.walk()
    assert w.problems == [], w.problems
    assert len(w.leaves) == 1, leaves(w)
    leaf = w.leaves[0]
    assert (leaf.iova, leaf.size, leaf.output, leaf.level, leaf.kind) == \
        (iova, size, PADDR, level, kind), leaf.describe()
    for offset in (0, 42, size - 8):
        assert w.translate(iova + offset) == PADDR + offset
        assert table.iova_to_phys(iova + offset) == PADDR + offset
    assert table.iova_to_phys(iova + size) == 0
    assert table.unmap(iova, size) == size
    after = table.walk()
    assert after.empty, leaves(after)


@pytest.mark.parametrize("prot", [
    Prot.READ, Prot.WRITE, Prot.READ | Prot.WRITE, Prot.READ | Prot.PRIV,
    Prot.READ | Prot.NOEXEC, Prot.READ | Prot.WRITE | Prot.CACHE,
    Prot.READ | Prot.WRITE | Prot.MMIO, Prot.READ | Prot.CACHE | Prot.NOEXEC | Prot.PRIV,
], ids=lambda p: p.wire())
def test_permissions_and_memory_type(pgtable, prot):
    table = pgtable()
    assert table.map(0x10_0000, PADDR, 0x1000, 1, prot).ret == 0
    (leaf,) = table.walk().leaves
    d, why = leaf.desc, leaf.describe()
    # Expected values come from what the prot asks for, in Arm terms.
    assert d.read_only == (not prot & Prot.WRITE), why
    assert d.unprivileged == (not prot & Prot.PRIV), why
    assert (d.uxn, d.pxn) == (bool(prot & Prot.NOEXEC),) * 2, why
    assert d.af, why  # an unset AF would fault on first use
    assert d.ng, why  # io-pgtable maps non-global (per-ASID) entries
    if prot & Prot.MMIO:
        assert leaf.memtype.kind == "device" and leaf.memtype.device == "nGnRE", why
    elif prot & Prot.CACHE:
        assert leaf.memtype.cacheable and d.shareability == "inner-shareable", why
    else:
        assert (leaf.memtype.kind, leaf.memtype.inner, leaf.memtype.outer) == \
            ("normal", "nc", "nc"), why
    if not prot & (Prot.CACHE | Prot.MMIO):
        assert d.shareability == "outer-shareable", why
    assert table.unmap(0x10_0000, 0x1000) == 0x1000
    assert table.walk().empty


def test_many_pages_then_one_larger_unmap_empties_the_table(pgtable):
    """DESIGN §1: map(0, 4K x 256); map(1M, 4K x 256); unmap(0, 2M x 1) -> 2M, table empty."""
    table = pgtable()
    assert table.map(0, PADDR, 0x1000, 256).mapped == 0x10_0000
    assert table.map(0x10_0000, PADDR + 0x10_0000, 0x1000, 256).mapped == 0x10_0000
    w = table.walk()
    assert len(w.leaves) == 512 and w.mapped_bytes() == 0x20_0000
    assert all(leaf.output == PADDR + leaf.iova for leaf in w.leaves)
    assert table.unmap(0, 0x20_0000, 1) == 0x20_0000
    assert table.walk().empty


def test_malformed_batch_is_rejected_whole(pgtable, module):
    table = pgtable()
    good = f"map id={table.id} iova=0x1000 paddr=0x2000 pgsize=0x1000 pgcount=1 prot=read"
    status, lines = module.raw(good + "\nmap id=1 iova=banana\n")
    assert status != 0 and "parse-error line=2" in lines[0] and "ret=-22" in lines[0]
    assert table.walk().empty  # the valid first line did not run either


def test_shared_memory_and_pmemsave_read_the_same_table(pgtable, guest):
    from harness.guest.guestmem import PmemsaveMemory

    table = pgtable()
    table.map(0x20_0000, PADDR, 0x20_0000)
    slow = PmemsaveMemory(guest.qmp, guest.rundir, guest.memory.base, guest.memory.size)
    with guest.qmp.paused():
        assert guest.memory.read(table.info.ttbr, 4096) == slow.read(table.info.ttbr, 4096)
    assert any(guest.memory.read(table.info.ttbr, 4096))
