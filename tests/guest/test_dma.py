"""A third implementation of the Arm translation rules checks the tables: QEMU's SMMUv3 walks
them for the edu device's DMA (our module programs the SMMU: stream table, CD from the table's
TTBR/MAIR/TCR, command and event queues). The host writes bytes into guest RAM that the kernel
does not use, the device moves them through the table, and the host reads where its own walk
says they must land. Faults come back as SMMU events with the faulting iova.

Expectations come from the Arm architecture (VMSAv8-64 stage 1, SMMUv3 STE/CD layouts), never
from the module's own answers."""
from __future__ import annotations

import pytest

from harness.guest.modclient import Prot
from harness.guest.qmp import QmpChannel
from harness.pgtable import smmuv3
from harness.pgtable.device import DmaBench
from harness.pgtable.lpae import granule_for
from harness.pgtable.walker import walk

pytestmark = pytest.mark.guest

SETS = {"4K": 0x4020_1000, "16K": 0x0200_4000, "64K": 0x2001_0000}
GRANULE = {"4K": 0x1000, "16K": 0x4000, "64K": 0x1_0000}
EDU = (0x1234, 0x11E8)
VIRTIO_NET = (0x1AF4, 0x1041)
SRC, DST = 0x10_0000, 0x20_0000  # where in the DMA window the source and destination bytes go
RW = Prot.READ | Prot.WRITE


@pytest.fixture
def bench(dma_bench: DmaBench | None) -> DmaBench:
    if dma_bench is None:
        pytest.skip("the module has no device DMA for this tree's driver API (no iopt_dma)")
    return dma_bench


def leaf_table_span(granule: int) -> int:
    """The input range one last-level table covers: granule/8 descriptors of a granule each."""
    return granule * (granule // 8)


def marks(granule: str) -> list[pytest.MarkDecorator]:
    return [] if granule == "4K" else [pytest.mark.granule(granule)]


LEAVES = [pytest.param(g, size, kind, id=f"{g}-{name}", marks=marks(g))
          for g, size, kind, name in [
              ("4K", 0x1000, "page", "4K-page"), ("4K", 0x20_0000, "block", "2M-block"),
              ("4K", 0x4000_0000, "block", "1G-block"),
              ("16K", 0x4000, "page", "16K-page"), ("16K", 0x200_0000, "block", "32M-block"),
              ("64K", 0x1_0000, "page", "64K-page"), ("64K", 0x2000_0000, "block", "512M-block")]]


@pytest.mark.parametrize("granule,size,kind", LEAVES)
def test_bytes_land_where_the_host_walk_says(pgtable, bench, granule, size, kind):
    """One leaf of `size` for the source and one for the destination, each covering a
    target inside the DMA window; the device's 4 KiB round trip must change exactly the
    destination's bytes (and no other byte of the window) to the source's."""
    table = pgtable(pgsizes=SETS[granule])
    src_pa, dst_pa = bench.pa(SRC), bench.pa(DST)
    src_iova = 8 * size
    dst_iova = src_iova + size
    for iova, target in ((src_iova, src_pa), (dst_iova, dst_pa)):
        base = target & ~(size - 1)
        assert table.map(iova, base, size, 1, RW).ret == 0
    w = table.walk()
    assert w.problems == [], w.problems
    for iova in (src_iova, dst_iova):
        leaf = w.leaf_at(iova)
        assert leaf is not None and (leaf.iova, leaf.size, leaf.kind) == (iova, size, kind), \
            leaf.describe() if leaf else "no leaf"
    # the offset inside the leaf that reaches each target, per the host walk
    src = src_iova + (src_pa & (size - 1))
    dst = dst_iova + (dst_pa & (size - 1))
    assert (w.translate(src), w.translate(dst)) == (src_pa, dst_pa)
    bench.attach(table)
    before = bench.snapshot()
    sent, got = bench.roundtrip(table, src, dst, 0x1000, seed=size)
    assert got == sent
    # what may have changed: the source bytes the host placed, the destination the device wrote
    assert bench.changed_only(before, [(src_pa, sent), (dst_pa, sent)]), \
        "the device wrote outside the destination the walk names"


@pytest.mark.parametrize("granule", [pytest.param(g, marks=marks(g)) for g in SETS])
def test_transfer_across_a_leaf_table_boundary(pgtable, bench, granule):
    """A 4 KiB transfer straddling two last-level tables, whose pages map to non-adjacent,
    descending physical addresses: each half lands where its own leaf says."""
    g = GRANULE[granule]
    span = leaf_table_span(g)
    table = pgtable(pgsizes=SETS[granule])
    # source pair and destination pair: the page before and after a leaf-table boundary
    pairs = [(span, bench.pa(0x30_0000), bench.pa(0x28_0000)),
             (2 * span, bench.pa(0x40_0000), bench.pa(0x38_0000))]
    for boundary, pa_before, pa_after in pairs:
        assert table.map(boundary - g, pa_before, g, 1, RW).ret == 0
        assert table.map(boundary, pa_after, g, 1, RW).ret == 0
    w = table.walk()
    assert w.problems == [] and len(w.leaves) == 4, w.problems
    assert len({t.addr for t in w.tables if t.addr != w.ttbr}) >= 3  # two leaf tables + parents
    bench.attach(table)
    src, dst = span - 0x800, 2 * span - 0x800
    sent, got = bench.roundtrip(table, src, dst, 0x1000, seed=g)
    assert got == sent
    # the halves: the end of the page before the boundary, the start of the page after it
    assert bench.memory.read(pairs[1][1] + g - 0x800, 0x800) == sent[:0x800]
    assert bench.memory.read(pairs[1][2], 0x800) == sent[0x800:]


def test_unmapped_iova_raises_f_translation_and_moves_nothing(pgtable, bench, kernel_log):
    table = pgtable()
    assert table.map(0x10_0000, bench.pa(SRC), 0x1000, 1, RW).ret == 0
    bench.attach(table)
    w = table.walk()
    bench.place(w, 0x10_0000, 0x1000, seed=7)
    assert bench.to_device(table, 0x10_0000, 0x1000).ret == 0  # the device's buffer is full
    before = bench.snapshot()
    unmapped = 0x40_0000 + 0x120
    r = bench.from_device(table, unmapped, 0x40, expect="translation")
    assert (r.ret, r.event, r.iova) == (-14, "F_TRANSLATION", unmapped), r.line
    assert bench.unchanged(before), "a faulting transfer changed guest RAM"
    r = bench.to_device(table, unmapped, 0x40, expect="translation")
    assert (r.ret, r.event, r.iova) == (-14, "F_TRANSLATION", unmapped), r.line
    # an event nobody asked for is a splat, like the kernel driver's fault reports
    with kernel_log.expect("iommu-fault", match=r"smmu event F_TRANSLATION .*iova=0x400120"):
        r = bench.from_device(table, unmapped, 0x10)
    assert r.event == "F_TRANSLATION"


def test_device_write_to_a_read_only_mapping_raises_f_permission(pgtable, bench):
    table = pgtable()
    assert table.map(0x10_0000, bench.pa(SRC), 0x1000, 1, RW).ret == 0
    assert table.map(0x20_0000, bench.pa(DST), 0x1000, 1, Prot.READ).ret == 0
    (ro,) = [leaf for leaf in table.walk().leaves if leaf.iova == 0x20_0000]
    assert ro.desc.read_only, ro.describe()
    bench.attach(table)
    w = table.walk()
    sent = bench.place(w, 0x10_0000, 0x1000, seed=3).data
    assert bench.to_device(table, 0x10_0000, 0x1000).ret == 0
    bench.clear(w, 0x20_0000, 0x1000, fill=0x5A)
    before = bench.snapshot()
    r = bench.from_device(table, 0x20_0000 + 0x40, 0x100, expect="permission")
    assert (r.ret, r.event, r.iova) == (-14, "F_PERMISSION", 0x20_0040), r.line
    assert bench.unchanged(before)
    # reading through the read-only mapping is allowed
    bench.place(w, 0x20_0000, 0x1000, seed=4)
    assert bench.to_device(table, 0x20_0000, 0x1000).ret == 0
    assert bench.from_device(table, 0x10_0000, 0x1000).ret == 0
    assert bench.read(w, 0x10_0000, 0x1000) == bench.read(w, 0x20_0000, 0x1000) != sent


@pytest.mark.parametrize("how", ["va", "asid"])
def test_unmap_needs_the_callers_tlb_invalidation(pgtable, bench, how):
    """io-pgtable's Rust wrapper flushes nothing (NOOP flush ops): after unmap, the device
    keeps using the cached translation until the driver invalidates it; then it faults."""
    table = pgtable()
    a, d = 0x10_0000, 0x20_0000
    assert table.map(a, bench.pa(SRC), 0x1000, 1, RW).ret == 0
    assert table.map(d, bench.pa(DST), 0x1000, 1, RW).ret == 0
    bench.attach(table)
    w = table.walk()
    sent = bench.place(w, a, 0x1000, seed=11).data
    assert bench.to_device(table, a, 0x1000).ret == 0  # the SMMU caches a's translation
    assert table.unmap(a, 0x1000) == 0x1000
    assert table.walk().translate(a) is None
    bench.clear(w, d, 0x1000)
    # stale: the forgotten invalidation still reaches the old page
    assert bench.to_device(table, a, 0x1000).ret == 0
    assert bench.from_device(table, d, 0x1000).ret == 0
    assert bench.read(w, d, 0x1000) == sent
    if how == "va":
        bench.client.tlbi(a, 0x1000)
    else:
        bench.client.tlbi()
    r = bench.to_device(table, a, 0x1000, expect="translation")
    assert (r.ret, r.event, r.iova) == (-14, "F_TRANSLATION", a), r.line


GEOMETRIES = [pytest.param(g, ias, oas, id=f"{g}-ias{ias}-oas{oas}", marks=marks(g))
              for g, ias, oas in [("4K", 48, 48), ("4K", 32, 40), ("16K", 36, 44),
                                  ("16K", 47, 48), ("64K", 42, 42), ("64K", 48, 48)]]


@pytest.mark.parametrize("granule,ias,oas", GEOMETRIES)
def test_host_decodes_the_live_ste_and_cd(pgtable, bench, qmp: QmpChannel, guest, granule,
                                          ias, oas):
    """STRTAB_BASE from the SMMU's register, the edu's StreamID from QEMU's PCI topology, its
    STE and CD from guest memory: the CD points at the table the host walks, with the T0SZ,
    TG0, IPS and walk attributes the table's geometry implies."""
    table = pgtable(ias=ias, oas=oas, pgsizes=SETS[granule])
    g = GRANULE[granule]
    assert table.map(4 * g, bench.pa(SRC), g, 1, RW).ret == 0
    bench.attach(table)
    info = bench.client.smmu()
    st = smmuv3.stream_table(qmp)
    assert st.smmu_enabled and st.fmt == 0
    assert st.base == info.strtab
    sids = smmuv3.stream_ids(qmp, *EDU)
    assert info.sid in sids and len(sids) == info.edus == guest.spec.edus
    assert guest.memory is not None
    stes = [smmuv3.ste(guest.memory, st, sid) for sid in sids]
    for ste in stes:  # every edu's stream: stage 1 through the one CD
        assert (ste.valid, ste.config, ste.s1fmt, ste.s1cdmax, ste.s1stalld, ste.s1ctxptr) == \
            (True, "s1", 0, 0, False, stes[0].s1ctxptr), ste
    ste = stes[0]
    cd = smmuv3.cd(guest.memory, ste)
    assert (cd.valid, cd.aa64, cd.r, cd.a, cd.s, cd.ha, cd.hd, cd.affd, cd.epd0, cd.epd1) == \
        (True, True, True, True, False, False, False, False, False, True), cd
    assert cd.ttb0 == table.info.ttbr
    assert cd.mair == table.info.mair
    assert cd.asid == table.id
    tcr = smmuv3.expected_tcr(ias, g, oas, coherent_walk=True)
    assert (cd.t0sz, cd.granule, cd.ips_bits, cd.irgn0, cd.orgn0, cd.sh0) == \
        (tcr.t0sz, tcr.granule, tcr.ips_bits, tcr.irgn0, tcr.orgn0, tcr.sh0), cd
    # the walk the CD describes is the walk of the table
    assert cd.granule is not None
    seen = walk(guest.memory, cd.ttb0, granule_for(cd.granule), 64 - cd.t0sz, cd.mair)
    assert [(leaf.iova, leaf.size, leaf.output) for leaf in seen.leaves] == \
        [(leaf.iova, leaf.size, leaf.output) for leaf in table.walk().leaves] == \
        [(4 * g, g, bench.pa(SRC))]
    # every other stream bypasses (the NIC's DMA is never translated), and detach aborts
    (nic,) = smmuv3.stream_ids(qmp, *VIRTIO_NET)
    assert smmuv3.ste(guest.memory, st, nic).config == "bypass"
    bench.client.detach()
    assert [smmuv3.ste(guest.memory, st, sid).config for sid in sids] == ["abort"] * len(sids)


def test_probe_reads_several_iovas_at_once(pgtable, bench):
    """`probe` spreads reads over every edu; each answer belongs to its own iova."""
    table = pgtable()
    assert table.map(0x10_0000, bench.pa(SRC), 0x1000, 1, RW).ret == 0
    assert table.map(0x30_0000, bench.pa(DST), 0x1000, 1, Prot.READ).ret == 0
    bench.attach(table)
    iovas = [0x10_0000, 0x20_0008, 0x30_0010, 0x40_0000, 0x10_0ff8, 0x50_0000, 0x30_0000,
             0x60_0100]
    seen = bench.client.probe(table.id, iovas)
    mapped = {0x10_0000, 0x10_0ff8, 0x30_0010, 0x30_0000}
    assert seen == [("ok", i) if i in mapped else ("F_TRANSLATION", i) for i in iovas]
    assert bench.disagreements(table, table.walk(), iovas) == []


def test_output_beyond_the_smmus_address_size_raises_f_addr_size(pgtable, bench):
    """A leaf whose output is at or above the effective output size (CD.IPS capped by the
    SMMU's IDR5.OAS, read by the host) faults with F_ADDR_SIZE; just below it, no event."""
    table = pgtable(ias=48, oas=48)
    oas = bench.smmu_oas
    assert oas < 48, "this QEMU's SMMU implements 48-bit output: nothing to check here"
    above, below = 1 << oas, (1 << oas) - 0x1000
    assert table.map(0x10_0000, above, 0x1000, 1, RW).ret == 0
    assert table.map(0x20_0000, below, 0x1000, 1, RW).ret == 0
    w = table.walk()
    assert (w.translate(0x10_0000), w.translate(0x20_0000)) == (above, below)
    bench.attach(table)
    r = bench.to_device(table, 0x10_0000 + 0x18, 8, expect="addr_size")
    assert (r.ret, r.event, r.iova) == (-14, "F_ADDR_SIZE", 0x10_0018), r.line
    assert bench.to_device(table, 0x20_0000, 8).ret == 0  # nothing there, but no fault


def test_a_table_with_a_52_bit_ips_is_refused_by_an_smmu_without_52_bit_output(pgtable, bench,
                                                                              module, guest):
    """A 64K table of oas 52 gets TCR.IPS = 52 bits. The architecture reads a larger CD.IPS as
    the SMMU's own output size, but QEMU 10.0's SMMUv3 aborts the whole machine on it (seen:
    `smmuv3-internal.h: oas2bits: code should not be reached`): `attach` must refuse such a
    table (ERANGE) and leave the device with the table it had."""
    if bench.smmu_oas >= 52:
        pytest.skip("this SMMU implements 52-bit output: the CD takes the table as it is")
    wide = pgtable(ias=48, oas=52, pgsizes=0x2001_0000)
    assert (wide.info.oas, wide.info.tcr.ips) == (52, 6), wide.info
    r = module.request(f"attach id={wide.id}")
    assert (r.ret, r.src) == (-34, "check"), r.line
    assert guest.alive and module.version() > 0  # QEMU still there
    assert module.request("smmu").ok()
