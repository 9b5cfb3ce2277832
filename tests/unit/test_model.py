from harness.pgtable.lpae import GRANULES
from harness.pgtable.model import TableModel, compare, diff
from harness.pgtable.walker import walk

from .tablebuilder import TableBuilder

MAIR = 0xFFFFFFFFF404FF44
G4K = GRANULES[0x1000]


def test_compare_names_missing_wrong_and_extra_leaves():
    tb = TableBuilder(G4K, 48)
    tb.map(0x1000, 0x9000_0000, 0x1000)
    tb.map(0x2000, 0x9999_0000, 0x1000)  # wrong output
    tb.map(0x20_0000, 0xA000_0000, 0x20_0000)  # not in the model
    model = TableModel()
    model.map(0x1000, 0x9000_0000, 0x1000, 3, 3)  # 0x1000, 0x2000, 0x3000
    problems = compare(walk(tb.mem, tb.ttbr, G4K, 48, MAIR), model)
    assert any("0x2000: expected 0x1000 -> 0x90001000" in p for p in problems)
    assert any("iova 0x3000: expected" in p and "found nothing" in p for p in problems)
    assert any(p.startswith("unexpected leaf: iova 0x200000") for p in problems)
    assert len(problems) == 3


def test_model_free_and_unmap():
    model = TableModel()
    model.map(0x10_0000, 0, 0x1000, 4, 1)
    assert not model.free(0x10_3000, 0x1000) and model.free(0x10_4000, 0x1000)
    model.unmap(0x10_0000, 0x2000)
    assert sorted(model.leaves) == [0x10_2000, 0x10_3000]


def test_diff_sees_added_removed_and_changed_entries():
    tb = TableBuilder(G4K, 48)
    slot = tb.map(0x1000, 0x9000_0000, 0x1000)
    before = walk(tb.mem, tb.ttbr, G4K, 48, MAIR)
    tb.poke(slot, 0)
    tb.map(0x3000, 0x9000_3000, 0x1000)
    changed = tb.map(0x20_0000, 0xA000_0000, 0x20_0000)
    after = walk(tb.mem, tb.ttbr, G4K, 48, MAIR)
    d = diff(before, after)
    assert list(d.removed) == [slot] and changed in d.added and len(d.added) == 2
    assert not d.changed and not d.empty
    assert diff(after, after).empty


def test_calls_end_at_each_table_end():
    """One call per table: 4K pages stop at 2M boundaries, 2M blocks at 1G, 32M (16K) at 64G."""
    from harness.pgtable.lpae import GRANULES
    from harness.pgtable.model import calls, table_span

    g4, g16 = GRANULES[0x1000], GRANULES[0x4000]
    assert table_span(g4, 0x1000) == 0x20_0000 and table_span(g16, 0x200_0000) == 1 << 36
    assert calls(g4, 0x20_0000 - 0x3000, 0x1000, 6) == [(0x1F_D000, 3), (0x20_0000, 3)]
    assert calls(g4, 0, 0x1000, 1024) == [(0, 512), (0x20_0000, 512)]
    assert calls(g4, 0x4000_0000 - 0x20_0000, 0x20_0000, 1) == [(0x3FE0_0000, 1)]
    assert calls(g16, (1 << 36) - 0x200_0000, 0x200_0000, 2) == \
        [((1 << 36) - 0x200_0000, 1), (1 << 36, 1)]
