import subprocess

import pytest

from harness.errors import TreeError
from harness.build.tree import KernelTree, identify, user_tree


def _fake_tree(root, rust=True, abstraction=True):
    (root / "arch/arm64").mkdir(parents=True)
    (root / "init").mkdir()
    (root / "Makefile").write_text("VERSION = 7\nPATCHLEVEL = 3\nSUBLEVEL = 4\nEXTRAVERSION =\n")
    (root / "init/Kconfig").write_text("config RUST\n" if rust else "config X\n")
    if rust:
        (root / "rust/kernel").mkdir(parents=True)
        (root / "rust/kernel/lib.rs").write_text("")
        if abstraction:
            (root / "rust/kernel/iommu").mkdir()
            (root / "rust/kernel/iommu/pgtable.rs").write_text("// v1\n")
    return root


def test_tree_without_rust_is_refused(tmp_path):
    with pytest.raises(TreeError, match="no Rust support"):
        user_tree(_fake_tree(tmp_path, rust=False))


def test_tree_without_the_abstraction_is_refused(tmp_path):
    with pytest.raises(TreeError, match="kernel::iommu::pgtable"):
        user_tree(_fake_tree(tmp_path, abstraction=False))


def test_in_tree_configured_tree_is_refused(tmp_path):
    tree = _fake_tree(tmp_path)
    (tree / ".config").write_text("")
    with pytest.raises(TreeError, match="mrproper"):
        user_tree(tree)


def test_git_identity_tracks_edits_without_touching_the_repo(tmp_path):
    tree = _fake_tree(tmp_path)
    git = ["git", "-C", str(tree), "-c", "user.email=t@t", "-c", "user.name=t"]
    subprocess.run(git + ["init", "-q"], check=True)
    subprocess.run(git + ["add", "-A"], check=True)
    subprocess.run(git + ["commit", "-qm", "base"], check=True)
    index = tree / ".git/index"
    before = index.stat().st_mtime_ns
    clean = identify(KernelTree(tree, "user"))
    assert clean.kind == "git" and clean.dirty == "" and len(clean.commit) == 40
    (tree / "rust/kernel/iommu/pgtable.rs").write_text("// v2\n")
    dirty = identify(KernelTree(tree, "user"))
    assert dirty.commit == clean.commit and dirty.dirty
    (tree / "rust/kernel/iommu/pgtable.rs").write_text("// v3\n")
    assert identify(KernelTree(tree, "user")).dirty != dirty.dirty
    assert index.stat().st_mtime_ns == before
    assert "7.3.4 git" in dirty.describe()
