"""The stage-1 format beyond the common path, decoded by the host from the descriptors: the
quirks the Rust `Config` can pass (ARM_NS, ARM_HD, ARM_OUTER_WBWA), 52-bit output addresses
with the 64K granule, the page sizes each granule allows, and the translation control (TCR
fields) a device walking the table needs.

Every expectation comes from the Arm ARM (VMSAv8-64 descriptor and TCR_ELx field encodings) or
from what io-pgtable.h documents a quirk to do, never from what the kernel answered.
"""
from __future__ import annotations

import pytest

from harness.guest.modclient import Prot, Quirk, create_request, req, table_info
from harness.pgtable.tables import GuestTable
from harness.pgtable.walker import TablePage, Walk

pytestmark = pytest.mark.guest

K4, K16, K64 = 0x1000, 0x4000, 0x1_0000
M2, M32, M512, G1, T4 = 0x20_0000, 0x200_0000, 0x2000_0000, 0x4000_0000, 1 << 42
RW, RO, WO = Prot.READ | Prot.WRITE, Prot.READ, Prot.WRITE

# The block and page sizes of each granule and the level holding each (Arm ARM, VMSAv8-64
# translation table format: 4K has level-1 and level-2 blocks, 16K and 64K level-2 only, and
# 64K with 52-bit output addresses (FEAT_LPA) gains a 4TB level-1 block).
LEVELS = {
    "4K": {K4: 3, M2: 2, G1: 1},
    "16K": {K16: 3, M32: 2},
    "64K": {K64: 3, M512: 2},
    "64K-oa52": {K64: 3, M512: 2, T4: 1},
}
GRANULE_SIZE = {"4K": K4, "16K": K16, "64K": K64}
# TCR_ELx.TG0 and IPS encodings.
TG0 = {K4: 0b00, K64: 0b01, K16: 0b10}
IPS = {32: 0b000, 36: 0b001, 40: 0b010, 42: 0b011, 44: 0b100, 48: 0b101, 52: 0b110}
# TCR_ELx.SH0 and IRGN0/ORGN0 encodings.
SH_OUTER, SH_INNER = 0b10, 0b11
RGN_NC, RGN_WBWA = 0b00, 0b01


def granule_param(name: str, *values: object) -> object:
    return pytest.param(name, *values, id="-".join([name, *map(str, values)]),
                        marks=pytest.mark.granule(name))


def bitmap(sizes: dict[int, int]) -> int:
    return sum(sizes)


def every_power_of_two_from(granule: int) -> int:
    """Every power of two from the granule up (for 4K: every one there is). Smaller ones would
    make io-pgtable pick a smaller granule (the CPU page size, then the largest below it)."""
    return ((1 << 64) - 1) & ~(granule - 1)


def map_every_size(table: GuestTable, prots: tuple[Prot, ...] = (RW, RO, WO)) -> dict[int, Prot]:
    """One leaf of every page size the table keeps for each of `prots`, at iovas and output
    addresses of their own; returns leaf iova -> prot."""
    sizes = [1 << b for b in range(64) if table.info.pgsizes >> b & 1]
    top_pa = 1 << (table.info.oas - 1)
    placed: dict[int, Prot] = {}
    requests = []
    for size in sizes:
        for k, prot in enumerate(prots):
            iova = size * (4 + k)  # [4s, 7s): disjoint from every other size's
            requests.append(req("map", id=table.id, iova=iova, paddr=top_pa + iova, pgsize=size,
                                pgcount=1, prot=prot))
            placed[iova] = prot
    replies = table.client.batch(requests)
    assert all((r.ret, r.src) == (0, "pgtable") for r in replies), replies
    return placed


def walk_clean(table: GuestTable) -> Walk:
    w = table.walk()
    assert w.problems == [], w.problems
    return w


def tables_below_root(w: Walk) -> list[TablePage]:
    below = [t for t in w.tables if t.parent is not None]
    assert below, "no table descriptor to check"
    return below


# --- quirks -----------------------------------------------------------------------------------

@pytest.mark.parametrize("name,ns", [granule_param(g, ns) for g in GRANULE_SIZE for ns in (1, 0)])
def test_arm_ns_sets_ns_on_every_leaf_and_nstable_on_every_table(pgtable, name, ns):
    """IO_PGTABLE_QUIRK_ARM_NS: NS (bit 5) on every block and page, NSTable (bit 63) on every
    table descriptor; neither anywhere without the quirk."""
    quirks = Quirk.ARM_NS if ns else 0
    table = pgtable(pgsizes=every_power_of_two_from(GRANULE_SIZE[name]), quirks=quirks)
    assert table.info.quirks == quirks
    placed = map_every_size(table)
    w = walk_clean(table)
    assert sorted(leaf.iova for leaf in w.leaves) == sorted(placed)
    wrong = [leaf.describe() for leaf in w.leaves if leaf.desc.ns != bool(ns)]
    assert not wrong, f"NS should be {ns}: {wrong}"
    wrong = [t.parent.bits() for t in tables_below_root(w) if t.parent.nstable != bool(ns)]
    assert not wrong, f"NSTable should be {ns}: {wrong}"


@pytest.mark.parametrize("name,hd", [granule_param(g, hd) for g in GRANULE_SIZE for hd in (1, 0)])
def test_arm_hd_sets_dbm_on_writable_leaves_only(pgtable, name, hd):
    """IO_PGTABLE_QUIRK_ARM_HD: DBM (bit 51) on every writable leaf (AP[2] = 0: writable-dirty
    from the start), never on a read-only one (AP[2] = 1 with DBM would be writable-clean, i.e.
    a device could write it); no DBM at all without the quirk."""
    quirks = Quirk.ARM_HD if hd else 0
    table = pgtable(pgsizes=every_power_of_two_from(GRANULE_SIZE[name]), quirks=quirks)
    placed = map_every_size(table)
    w = walk_clean(table)
    assert sorted(leaf.iova for leaf in w.leaves) == sorted(placed)
    for leaf in w.leaves:
        writable = bool(placed[leaf.iova] & Prot.WRITE)
        assert leaf.desc.read_only == (not writable), leaf.describe()
        assert leaf.desc.dbm == (writable and bool(hd)), \
            f"{'writable' if writable else 'read-only'} leaf, HD {hd}: {leaf.describe()}"


@pytest.mark.parametrize("name", [granule_param(g) for g in GRANULE_SIZE])
def test_walk_cacheability_follows_coherent_walk_and_outer_wbwa(pgtable, module, name):
    """TCR IRGN0/ORGN0/SH0: a coherent walker reads the tables as the CPU wrote them (Normal
    inner and outer Write-Back, Inner Shareable); a non-coherent one reads Non-cacheable memory
    (Outer Shareable, as the architecture treats all Non-cacheable memory), except that
    IO_PGTABLE_QUIRK_ARM_OUTER_WBWA makes its outer attribute Write-Back Write-Allocate. The
    quirk is documented for a non-coherent walker only: with a coherent one it is refused.
    Maps through a non-coherent table (its pages synced with the DMA API) must still be right."""
    pgsizes = every_power_of_two_from(GRANULE_SIZE[name])
    cases = {(True, 0): (RGN_WBWA, RGN_WBWA, SH_INNER),
             (False, 0): (RGN_NC, RGN_NC, SH_OUTER),
             (False, Quirk.ARM_OUTER_WBWA): (RGN_NC, RGN_WBWA, SH_OUTER)}
    for (coherent, quirks), (irgn, orgn, sh) in cases.items():
        table = pgtable(pgsizes=pgsizes, quirks=quirks, coherent_walk=coherent)
        info = table.info
        assert info.coherent_walk == coherent and info.quirks == quirks
        assert info.tcr is not None
        got = (info.tcr.irgn0, info.tcr.orgn0, info.tcr.sh0)
        assert got == (irgn, orgn, sh), f"coherent_walk={coherent} quirks={quirks:#x}: {info.tcr}"
        placed = map_every_size(table, (RW,))
        w = walk_clean(table)
        assert {leaf.iova: leaf.output for leaf in w.leaves} == \
            {iova: (1 << (info.oas - 1)) + iova for iova in placed}
        assert module.info(table.id) == info
    before = module.list()
    r = module.request(create_request(pgsizes=pgsizes, quirks=Quirk.ARM_OUTER_WBWA))
    assert r.ret != 0 and r.src == "pgtable", r.line
    assert module.list() == before


@pytest.mark.parametrize("quirk,src", [
    (Quirk.NO_PERMS, "pgtable"), (Quirk.ARM_MTK_EXT, "pgtable"),
    (Quirk.ARM_MTK_TTBR_EXT, "pgtable"), (Quirk.ARM_S2FWB, "pgtable"),
    (Quirk.ARM_TTBR1, "check"), (1 << 2, "check"), (1 << 10, "check"), (1 << 63, "check"),
], ids=lambda v: getattr(v, "name", None) or (f"{v:#x}" if isinstance(v, int) else v))
def test_unsupported_quirks_are_refused_at_create(module, quirk, src):
    """io-pgtable-arm's stage-1 format accepts ARM_NS, ARM_TTBR1, ARM_OUTER_WBWA, ARM_HD and
    NO_WARN: the quirks of other formats must be refused by io-pgtable itself (the module
    passes them on); TTBR1 (which the module does not model) and bits naming no quirk are
    refused by the module before io-pgtable is called. Either way no table is left behind."""
    before = module.list()
    r = module.request(create_request(quirks=quirk))
    assert r.ret < 0 and r.src == src, r.line
    if src == "check":
        assert r.ret == -22
    assert module.list() == before


# --- 52-bit output addresses ------------------------------------------------------------------

@pytest.mark.granule("64K")
@pytest.mark.parametrize("ias", [48, 52])
def test_64k_oas52_output_addresses_above_2_pow_48_decode_exactly(pgtable, module, ias):
    """With the 64K granule and oas 52, PA bits [51:48] live in descriptor bits [15:12]: a page,
    a 512M block and a 4TB level-1 block each map output addresses above 2^48 exactly (the
    addresses need no RAM: the host decodes descriptors, it never follows a leaf)."""
    table = pgtable(ias=ias, oas=52, pgsizes=K64 | M512 | T4)
    assert (table.info.ias, table.info.oas, table.info.pgsizes) == (ias, 52, K64 | M512 | T4)
    top = 1 << ias
    placements = [  # (iova, paddr, size): every PA[51:48] nibble value that matters
        (0, (0xF << 48) | 0x1234_5678_0000, K64),
        (M512, (0xA << 48) | 0x20_0000_0000 | M512, M512),
        (T4, 0x5 << 48, T4),
        (top - T4, ((1 << 52) - T4), T4),  # the last 4TB of both spaces
        (top - T4 - K64, (1 << 48) | K64, K64),  # PA[48] alone
    ]
    replies = module.batch([req("map", id=table.id, iova=i, paddr=p, pgsize=s, pgcount=1,
                                prot=RW) for i, p, s in placements])
    assert [(r.ret, r.num("mapped")) for r in replies] == [(0, s) for _, _, s in placements]
    w = walk_clean(table)
    found = {leaf.iova: (leaf.size, leaf.output, leaf.level) for leaf in w.leaves}
    assert found == {i: (s, p, LEVELS["64K-oa52"][s]) for i, p, s in placements}
    for raw_leaf in w.leaves:
        assert (raw_leaf.desc.raw >> 12) & 0xF == raw_leaf.output >> 48, raw_leaf.describe()
    phys = module.batch([req("iova_to_phys", id=table.id, iova=i + 0x4242) for i, _, _ in placements])
    assert [r.num("phys") for r in phys] == [p + 0x4242 for _, p, _ in placements]
    unmapped = module.batch([req("unmap", id=table.id, iova=i, pgsize=s, pgcount=1)
                             for i, _, s in placements])
    assert [r.num("unmapped") for r in unmapped] == [s for _, _, s in placements]
    assert table.walk().empty


@pytest.mark.granule("64K")
def test_64k_oas48_keeps_no_4tb_block_and_refuses_output_above_2_pow_48(pgtable, module):
    """Without 52-bit output addresses there is no level-1 block: io-pgtable must drop 4TB
    from the bitmap even when it is offered, and an output address of 49 bits is out of range."""
    table = pgtable(oas=48, pgsizes=K64 | M512 | T4)
    assert table.info.pgsizes == K64 | M512
    r = table.map(0, 1 << 48, K64)
    assert (r.ret, r.mapped) == (-34, 0), r
    assert table.walk().empty


# --- page sizes -------------------------------------------------------------------------------

@pytest.mark.parametrize("name,oas", [granule_param("4K", 48), granule_param("16K", 48),
                                      granule_param("64K", 48), granule_param("64K", 52)])
def test_every_power_of_two_offered_keeps_the_granules_block_sizes(pgtable, name, oas):
    """Offered every power of two from the granule up, io-pgtable keeps exactly the sizes the
    architecture has for that granule (4K: 4K|2M|1G; 16K: 16K|32M; 64K: 64K|512M, plus 4TB
    with 52-bit output addresses), and each, mapped, is a leaf at its architectural level."""
    expected = LEVELS[f"{name}-oa52" if oas == 52 else name]
    table = pgtable(oas=oas, pgsizes=every_power_of_two_from(GRANULE_SIZE[name]))
    assert table.info.pgsizes == bitmap(expected), f"{table.info.pgsizes:#x}"
    placed = map_every_size(table, (RW,))
    w = walk_clean(table)
    assert len(w.leaves) == len(placed) == len(expected)
    for leaf in w.leaves:
        assert leaf.iova in placed and leaf.level == expected[leaf.size], leaf.describe()
        assert leaf.kind == ("page" if leaf.level == 3 else "block"), leaf.describe()
        assert leaf.output == (1 << (oas - 1)) + leaf.iova, leaf.describe()


# --- translation control ----------------------------------------------------------------------

def tcr_cases(name: str) -> list[tuple[int, int]]:
    top = 52 if name == "64K" else 48
    bits = [b for b in (32, 36, 40, 42, 44, 48, 52) if b <= top]
    return [(ias, oas) for ias in bits + [33, 39, 47] for oas in bits if ias <= top]


@pytest.mark.parametrize("name", [granule_param(g) for g in GRANULE_SIZE])
def test_tcr_fields_follow_ias_granule_and_oas(module, name):
    """T0SZ = 64 - ias, TG0 the granule's encoding, IPS the output size's encoding (Arm ARM
    TCR_ELx), for every output size IPS can encode and a spread of input sizes; an output size
    IPS cannot encode is refused; 4K and 16K stop at 48 bits without FEAT_LPA2."""
    granule = GRANULE_SIZE[name]
    pgsizes = every_power_of_two_from(granule)
    cases = tcr_cases(name)
    replies = module.batch([create_request(ias, oas, pgsizes) for ias, oas in cases])
    infos = []
    try:
        for (ias, oas), r in zip(cases, replies):
            assert (r.ret, r.src) == (0, ""), f"ias {ias} oas {oas}: {r.line}"
            infos.append(table_info(r))
        for (ias, oas), info in zip(cases, infos):
            assert info.tcr is not None
            assert (info.ias, info.oas) == (ias, oas)
            assert (info.tcr.t0sz, info.tcr.tg0, info.tcr.ips) == (64 - ias, TG0[granule], IPS[oas]), \
                f"ias {ias} oas {oas} {name}: {info.tcr}"
    finally:
        module.batch([req("destroy", id=r.num("id")) for r in replies if r.ret == 0])
    before = module.list()
    for oas in (34, 45) + ((50,) if name == "64K" else ()):
        r = module.request(create_request(48, oas, pgsizes))
        assert r.ret != 0 and r.src == "pgtable", f"oas {oas}: {r.line}"
    assert module.list() == before
    if name != "64K":  # ias and oas above 48 are clamped to the 48 bits the granule allows
        info = module.create(52, 52, pgsizes)
        try:
            assert (info.ias, info.oas) == (48, 48)
            assert info.tcr is not None and (info.tcr.t0sz, info.tcr.ips) == (16, IPS[48])
            assert info.pgsizes == bitmap(LEVELS[name])
        finally:
            module.destroy(info.id).ok()
