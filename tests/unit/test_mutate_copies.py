"""mutate's private copies: one per tree, never the user's tree, never another tree's copy (it
once kept one fixed copy of whichever tree came first)."""
from __future__ import annotations

from pathlib import Path

from harness.build.tree import KernelTree
from harness.workflows.mutate import private_copy


def test_each_tree_gets_its_own_copy(tmp_path: Path) -> None:
    trees = []
    for name in ("a", "b"):
        tree = tmp_path / name
        (tree / "drivers/iommu").mkdir(parents=True)
        (tree / "drivers/iommu/io-pgtable-arm.c").write_text(f"/* tree {name} */\n")
        trees.append(KernelTree(tree, "user"))
    cache = tmp_path / "cache"
    first, second = (private_copy(t, cache) for t in trees)
    assert first != second
    assert (second / "drivers/iommu/io-pgtable-arm.c").read_text() == "/* tree b */\n"
    assert private_copy(trees[0], cache) == first  # made once, then reused
