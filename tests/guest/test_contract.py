"""The io_pgtable contract (DESIGN.md §1), checked from outside the guest: every map/unmap
outcome, the overlap path, and whole-table diffs so untouched neighbours are proven untouched."""
from __future__ import annotations

import pytest

from harness.pgtable.model import diff
from harness.guest.modclient import Prot, Quirk

pytestmark = pytest.mark.guest

K4, M2, G1 = 0x1000, 0x20_0000, 0x4000_0000
PA = 0x40_0000_0000
RW = Prot.READ | Prot.WRITE
EINVAL, ERANGE, EEXIST = -22, -34, -17


def test_short_success_at_a_leaf_table_boundary_then_retry(pgtable):
    """io-pgtable-arm maps at most one leaf table per call: Ok with a shorter prefix."""
    table = pgtable()
    start, count = M2 - 16 * K4, 48  # 16 pages in one L3 table, 32 in the next
    first = table.map(start, PA, K4, count)
    assert (first.ret, first.mapped) == (0, 16 * K4), first
    rest = count - first.mapped // K4
    second = table.map(start + first.mapped, PA + first.mapped, K4, rest)
    assert (second.ret, second.mapped) == (0, rest * K4), second
    w = table.walk()
    assert len(w.leaves) == count and w.problems == []
    assert all(leaf.output == PA + (leaf.iova - start) for leaf in w.leaves)
    assert len([t for t in w.tables if t.level == 3]) == 2


@pytest.mark.parametrize("case,args,errno,warns", [
    ("pgsize not in bitmap", dict(iova=0, paddr=PA, pgsize=0x2000, pgcount=1, prot=RW), EINVAL, 1),
    ("pgsize zero", dict(iova=0, paddr=PA, pgsize=0, pgcount=1, prot=RW), EINVAL, 1),
    ("iova beyond ias", dict(iova=1 << 48, paddr=PA, pgsize=K4, pgcount=1, prot=RW), ERANGE, 1),
    ("paddr beyond oas", dict(iova=0, paddr=1 << 48, pgsize=K4, pgcount=1, prot=RW), ERANGE, 1),
    ("neither read nor write", dict(iova=0, paddr=PA, pgsize=K4, pgcount=1, prot=Prot.CACHE), EINVAL, 0),
])
def test_c_errors_map_nothing(pgtable, kernel_log, case, args, errno, warns):
    """Through the unchecked path the C code decides: errno, mapped == 0, the WARNs it documents."""
    table = pgtable()
    before = table.walk()
    with kernel_log.expect("warning", match="io-pgtable-arm", count=warns):
        r = table.map(unchecked=True, **args)
    assert (r.ret, r.mapped) == (errno, 0), f"{case}: {r}"
    after = table.walk()
    assert diff(before, after).empty, diff(before, after).describe()


@pytest.mark.parametrize("case,args,errno", [
    ("pgsize not in bitmap", dict(iova=0, paddr=PA, pgsize=0x2000, pgcount=1, prot=RW), EINVAL),
    ("misaligned iova", dict(iova=0x800, paddr=PA, pgsize=K4, pgcount=1, prot=RW), EINVAL),
    ("misaligned paddr", dict(iova=0, paddr=PA + 0x800, pgsize=K4, pgcount=1, prot=RW), EINVAL),
    ("iova beyond ias", dict(iova=(1 << 48) - K4, paddr=PA, pgsize=K4, pgcount=2, prot=RW), ERANGE),
    ("paddr beyond oas", dict(iova=0, paddr=(1 << 48) - K4, pgsize=K4, pgcount=2, prot=RW), ERANGE),
    ("no read or write", dict(iova=0, paddr=PA, pgsize=K4, pgcount=1, prot=Prot.NOEXEC), EINVAL),
    ("pgcount zero", dict(iova=0, paddr=PA, pgsize=K4, pgcount=0, prot=RW), EINVAL),
    # io-pgtable counts a call's entries in an int: beyond INT_MAX it "maps" nonsense, and
    # 2^32 becomes Ok with nothing mapped.
    ("pgcount 0xffffffff", dict(iova=K4, paddr=PA, pgsize=K4, pgcount=0xFFFF_FFFF, prot=RW), ERANGE),
    ("pgcount 2^32", dict(iova=0, paddr=PA, pgsize=K4, pgcount=1 << 32, prot=RW), ERANGE),
])
def test_checked_requests_refuse_before_c(pgtable, case, args, errno):
    """The module's own checks answer first: same errno, mapped == 0, and no WARN at all."""
    table = pgtable()
    r = table.map(**args)
    assert (r.ret, r.mapped, r.src) == (errno, 0, "check"), f"{case}: {r}"
    assert table.walk().empty


def test_overlap_fails_with_eexist_one_warn_and_leaves_the_table_bit_for_bit(pgtable, kernel_log):
    table = pgtable()
    assert table.map(M2, PA, K4, 8).mapped == 8 * K4
    assert table.map(2 * M2, PA, M2).mapped == M2
    before = table.walk()
    assert table.map(M2 + 4 * K4, PA, K4, 1).src == "check"  # the checked path refuses it
    with kernel_log.expect("warning", match="io-pgtable-arm", count=1):
        r = table.map(M2 + 4 * K4, PA + M2, K4, 1, unchecked=True)
    assert (r.ret, r.mapped) == (EEXIST, 0), r
    with kernel_log.expect("warning", match="io-pgtable-arm", count=1):
        r = table.map(2 * M2, PA, M2, 1, unchecked=True)  # over a block
    assert (r.ret, r.mapped) == (EEXIST, 0), r
    after = table.walk()
    assert diff(before, after).empty, diff(before, after).describe()


def test_overlap_with_no_warn_quirk_is_silent(pgtable, kernel_log):
    table = pgtable(quirks=Quirk.NO_WARN)
    assert table.map(0, PA, K4).mapped == K4
    r = table.map(0, PA, K4, unchecked=True)
    assert (r.ret, r.mapped) == (EEXIST, 0)
    # the end-of-test check fails the test if any WARN was printed


def test_unmap_returns_a_short_prefix_at_a_table_boundary(pgtable):
    table = pgtable()
    start = M2 - 16 * K4
    for part in range(3):  # map 48 pages in calls that each stop at a table boundary
        done = sum(leaf.size for leaf in table.walk().leaves)
        if done == 48 * K4:
            break
        table.map(start + done, PA + done, K4, 48 - done // K4)
    assert table.walk().mapped_bytes() == 48 * K4
    unmapped = table.unmap(start, K4, 48)
    assert unmapped == 16 * K4  # one leaf table per call
    assert table.unmap(start + unmapped, K4, 32) == 32 * K4
    assert table.walk().empty


def test_unmap_neighbours_untouched_and_tables_freed(pgtable):
    table = pgtable()
    assert table.map(0, PA, K4, 512).mapped == M2  # one full L3 table under [0, 2M)
    table.map(M2, PA + M2, M2)  # a block next to it
    table.map(G1, PA + G1, K4, 4)  # another branch
    whole = table.walk()
    assert table.unmap(M2, M2) == M2
    after_block = table.walk()
    d = diff(whole, after_block)
    assert list(d.removed) == [whole.leaf_at(M2).entry_addr] and not d.changed and not d.added
    assert table.unmap(0, M2) == M2  # 512 small pages through one 2M unmap: frees the L3 table
    after = table.walk()
    assert [leaf.iova for leaf in after.leaves] == [G1 + i * K4 for i in range(4)]
    assert not [t for t in after.tables if t.iova == 0 and t.level == 3], "L3 table kept"
    assert table.unmap(G1, K4, 4) == 4 * K4
    assert table.walk().empty


def test_partial_block_unmap_is_refused(pgtable, kernel_log):
    table = pgtable()
    table.map(0, PA, M2)
    r = table.client.unmap(table.id, 0, K4, 1)
    assert (r.ret, r.src) == (-2, "check"), r  # checked: not covered by leaves <= 4K
    with kernel_log.expect("warning", match="partial large IOPTE|io-pgtable-arm", count=1):
        r = table.client.unmap(table.id, 0, K4, 1, unchecked=True)
    assert r.num("unmapped") == 0
    assert [leaf.size for leaf in table.walk().leaves] == [M2]


def _iommu_pages(ssh) -> int:
    """Pages io-pgtable holds (NR_IOMMU_PAGES). Per-CPU batching makes it lag by a few dozen
    pages, so the test moves it by hundreds."""
    for line in ssh.run("cat /proc/vmstat").check().stdout.splitlines():
        if line.startswith("nr_iommu_pages "):
            return int(line.split()[1])
    raise AssertionError("nr_iommu_pages missing from /proc/vmstat")


def test_table_pages_are_freed_by_unmap_and_destroy(pgtable, module, ssh):
    n, slack = 256, 64
    base = _iommu_pages(ssh)
    table = pgtable()
    replies = module.batch([f"map id={table.id} iova={i * M2:#x} paddr={PA:#x} pgsize=0x1000 "
                            "pgcount=512 prot=read" for i in range(n)])  # a full L3 table per 2M
    assert all(r.num("mapped") == M2 for r in replies)
    grown = _iommu_pages(ssh)
    assert grown - base >= n - slack, (base, grown)
    module.batch([f"unmap id={table.id} iova={i * M2:#x} pgsize={M2:#x} pgcount=1" for i in range(n)])
    assert table.walk().empty
    shrunk = _iommu_pages(ssh)
    assert grown - shrunk >= n - slack, f"L3 tables not freed by 2M unmaps: {base} {grown} {shrunk}"
    table.destroy()
    table.destroy = lambda: None  # the fixture must not destroy it again
    assert abs(_iommu_pages(ssh) - base) <= slack, "io-pgtable pages leaked"


@pytest.mark.parametrize("ias,pgsizes", [(12, 0x1000), (14, 0x4000), (16, 0x10000), (11, 0x1000)])
def test_an_input_space_no_larger_than_one_granule_is_refused(module, ias, pgsizes):
    """io-pgtable cannot serve it (it WARNs on every map and iova_to_phys): refused at create."""
    before = module.list()
    r = module.request(f"create ias={ias} oas=48 pgsizes={pgsizes:#x}")
    assert (r.ret, r.src) == (EINVAL, "check"), r
    assert module.list() == before


@pytest.mark.parametrize("iova", [1 << 48, (1 << 64) - 1, 1 << 63])
def test_iova_to_phys_beyond_ias_is_refused(pgtable, module, iova):
    """Never handed to io-pgtable (~0 wraps inside it): refused by the module, no WARN."""
    table = pgtable(ias=48)
    r = module.request(f"iova_to_phys id={table.id} iova={iova:#x}")
    assert (r.ret, r.src) == (ERANGE, "check"), r

