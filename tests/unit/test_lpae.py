import pytest

from harness.pgtable.lpae import GRANULES, decode, decode_mair, granule_for

G4K, G16K, G64K = GRANULES[0x1000], GRANULES[0x4000], GRANULES[0x10000]


@pytest.mark.parametrize("granule,ias,start,entries", [
    (G4K, 48, 0, 512), (G4K, 39, 1, 512), (G4K, 32, 1, 4), (G4K, 36, 1, 64),
    (G16K, 48, 0, 2), (G16K, 47, 1, 2048), (G16K, 36, 2, 2048), (G16K, 32, 2, 128),
    (G64K, 48, 1, 64), (G64K, 42, 2, 8192), (G64K, 32, 2, 8),
])
def test_start_level_and_root_size(granule, ias, start, entries):
    assert granule.start_level(ias) == start
    assert granule.root_entries(ias) == entries


def test_block_sizes_follow_the_granule():
    assert [G4K.block_size(level) for level in (1, 2, 3)] == [1 << 30, 2 << 20, 4 << 10]
    assert [G16K.block_size(level) for level in (2, 3)] == [32 << 20, 16 << 10]
    assert [G64K.block_size(level) for level in (2, 3)] == [512 << 20, 64 << 10]


def test_granule_is_the_smallest_page_size():
    assert granule_for(0x40201000) is G4K
    assert granule_for(0x2004000) is G16K
    assert granule_for(0x20010000) is G64K
    with pytest.raises(ValueError):
        granule_for(0x2000)


@pytest.mark.parametrize("attr,text", [
    (0x44, "Normal outer=nc inner=nc (0x44)"),
    (0xFF, "Normal outer=wb-rwa inner=wb-rwa (0xff)"),
    (0xF4, "Normal outer=wb-rwa inner=nc (0xf4)"),
    (0x04, "Device-nGnRE (0x04)"),
    (0x00, "Device-nGnRnE (0x00)"),
    (0xBB, "Normal outer=wt-rwa inner=wt-rwa (0xbb)"),
])
def test_mair_attributes(attr, text):
    mair = attr << 16  # index 2
    assert str(decode_mair(mair, 2)) == text


def test_mair_sign_extended_kernel_value_decodes_per_index():
    mair = 0xFFFFFFFFF404FF44  # what the 7.3 kernel reports (see DESIGN.md)
    assert decode_mair(mair, 0).inner == "nc"
    assert decode_mair(mair, 1).cacheable
    assert decode_mair(mair, 2).device == "nGnRE"
    assert decode_mair(mair, 3).outer.startswith("wb") and decode_mair(mair, 3).inner == "nc"


def test_page_descriptor_fields():
    raw = (0x8765_4000 | 1 | 2 | (1 << 2) | (1 << 5) | (0b11 << 6) | (3 << 8) | (1 << 10)
           | (1 << 11) | (1 << 51) | (1 << 52) | (1 << 53) | (1 << 54) | (0b1010 << 55))
    d = decode(raw, 3, G4K)
    assert d.kind == "page" and d.address == 0x8765_4000
    assert d.attr_index == 1 and d.ns and d.read_only and d.unprivileged
    assert d.shareability == "inner-shareable" and d.af and d.ng
    assert d.dbm and d.contiguous and d.pxn and d.uxn and d.software == 0b1010


@pytest.mark.parametrize("raw,level,kind", [
    (0, 3, "invalid"), (0x1003, 3, "page"), (0x1001, 3, "reserved"),
    (0x1003, 2, "table"), (0x20_0001, 2, "block"), (0x1002, 1, "invalid"),
])
def test_descriptor_kind(raw, level, kind):
    assert decode(raw, level, G4K).kind == kind


def test_block_address_drops_low_bits_and_64k_holds_high_oa():
    assert decode(0x4020_0000 | 1, 2, G4K).address == 0x4020_0000
    raw = 0x2000_0000 | (0x3 << 12) | 1  # 64K block, OA[51:48] = 3
    assert decode(raw, 2, G64K).address == (3 << 48) | 0x2000_0000


def test_decode_fills_every_field_as_the_dataclass_would():
    """decode builds the frozen Descriptor without its __init__ (speed): every field must be
    set, equal to what the constructor makes, and the instance still frozen."""
    import dataclasses

    from harness.pgtable.lpae import Descriptor

    names = {f.name for f in dataclasses.fields(Descriptor)}
    for granule in GRANULES.values():
        for level in range(4):
            for raw in (0, 0x2, 0x3 | 1 << 63, 0x0060_0000_8000_0743, 0xFFFF_FFFF_FFFF_FFFF):
                d = decode(raw, level, granule)
                assert set(vars(d)) == names
                made = Descriptor(**{n: getattr(d, n) for n in names})
                assert d == made and hash(d) == hash(made) and repr(d) == repr(made)
    with pytest.raises(dataclasses.FrozenInstanceError):
        d.raw = 1  # type: ignore[misc]
