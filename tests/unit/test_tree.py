import os
import subprocess
from pathlib import Path

import pytest

from harness.errors import TreeError
from harness.build.tree import KernelTree, content_key, fingerprint, identify, user_tree


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


def _committed_tree(tmp_path):
    """A fake kernel tree made a git repository with one commit, and the git command for it."""
    tree = _fake_tree(tmp_path)
    git = ["git", "-C", str(tree), "-c", "user.email=t@t", "-c", "user.name=t"]
    subprocess.run(git + ["init", "-q"], check=True)
    subprocess.run(git + ["add", "-A"], check=True)
    subprocess.run(git + ["commit", "-qm", "base"], check=True)
    return tree, git


def test_git_identity_tracks_edits_without_touching_the_repo(tmp_path):
    tree, _ = _committed_tree(tmp_path)
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


def test_content_key_of_a_git_tree_follows_content_not_metadata(tmp_path):
    """The build's key of a git tree: every edit (tracked, untracked, a new commit) changes it,
    a touch does not, and the user's index is never written."""
    tree, git = _committed_tree(tmp_path)
    index = tree / ".git/index"
    before = index.stat().st_mtime_ns
    source = tree / "rust/kernel/iommu/pgtable.rs"
    clean = content_key(tree)
    os.utime(source, ns=(1, 1))
    assert content_key(tree) == clean, "a touch is no change"
    source.write_text(source.read_text() + "// edit\n")
    edited = content_key(tree)
    assert edited != clean
    (tree / "drivers").mkdir(exist_ok=True)
    (tree / "drivers/new.c").write_text("int x;\n")
    untracked = content_key(tree)
    assert untracked not in (clean, edited)
    (tree / "drivers/new.c").write_text("int y;\n")
    assert content_key(tree) != untracked, "an untracked file counts by its content"
    # the identity made from the key is the one git gives on its own
    assert identify(KernelTree(tree, "user"), content=content_key(tree)) == identify(KernelTree(tree, "user"))
    assert index.stat().st_mtime_ns == before, "content_key wrote the user's index"
    subprocess.run(git + ["commit", "-qam", "edit"], check=True)
    committed = content_key(tree)
    assert committed not in (clean, edited, untracked)


def test_content_key_of_a_plain_tree_walks_it(tmp_path):
    tree = _fake_tree(tmp_path)
    clean = content_key(tree)
    assert clean == fingerprint(tree)
    (tree / "Makefile").write_text((tree / "Makefile").read_text() + "# edit\n")
    assert content_key(tree) != clean


def _tarball(tmp_path: Path) -> Path:
    import io
    import tarfile
    path = tmp_path / "linux-source-9.9.tar.xz"
    with tarfile.open(path, "w:xz") as archive:
        for name, data, mode in (("linux-source-9.9/Makefile", b"VERSION = 9\n", 0o644),
                                 ("linux-source-9.9/scripts/ld-version.sh", b"#!/bin/sh\n", 0o755)):
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), mode
            archive.addfile(info, io.BytesIO(data))
    return path


@pytest.mark.parametrize("host_tools", [True, False], ids=["xz and tar", "tarfile"])
def test_a_source_tarball_unpacks_the_same_with_or_without_the_hosts_tools(tmp_path, monkeypatch, host_tools):
    from harness.build import tree as tree_mod
    if not host_tools:
        monkeypatch.setattr(tree_mod.shutil, "which", lambda _name: None)
    into = tmp_path / "out"
    into.mkdir()
    tree_mod.extract(_tarball(tmp_path), into)
    assert (into / "linux-source-9.9/Makefile").read_bytes() == b"VERSION = 9\n"
    assert os.access(into / "linux-source-9.9/scripts/ld-version.sh", os.X_OK)


@pytest.mark.parametrize("host_tools", [True, False], ids=["xz and tar", "tarfile"])
def test_a_broken_tarball_is_a_tree_error(tmp_path, monkeypatch, host_tools):
    from harness.build import tree as tree_mod
    if not host_tools:
        monkeypatch.setattr(tree_mod.shutil, "which", lambda _name: None)
    broken = tmp_path / "linux-source-9.9.tar.xz"
    broken.write_bytes(_tarball(tmp_path).read_bytes()[:100])
    with pytest.raises(TreeError, match="cannot unpack"):
        tree_mod.extract(broken, tmp_path)
