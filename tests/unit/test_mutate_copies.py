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


def test_a_mutant_that_cannot_be_tried_fails_the_self_check(tmp_path: Path, monkeypatch) -> None:
    """A pattern the tree lacks (another kernel version, or a mutant gone stale) once dropped the
    mutant from the table silently, and mutate still exited 0."""
    from contextlib import contextmanager

    from harness.workflows import mutate
    from harness.workflows.options import SuiteOptions

    tree = tmp_path / "tree"
    (tree / "drivers/iommu").mkdir(parents=True)
    (tree / mutate.C_FILE).write_text("present;\n")
    chosen = [mutate.Mutant("applies", mutate.C_FILE, "present;", "absent;"),
              mutate.Mutant("stale", mutate.C_FILE, "not in this tree;", "x;")]
    monkeypatch.setattr(mutate, "MUTANTS", chosen)

    @contextmanager
    def copy(_tree, _root):
        yield tree
    seen: list[str] = []

    def suite(t, cache, options, results, names=mutate.SUITE):
        text = (t / mutate.C_FILE).read_text()
        seen.append(text)
        return True, text != "present;\n", 1.0, "tests/guest/x.py::t" if text != "present;\n" else ""
    monkeypatch.setattr(mutate, "mutable_tree", copy)
    monkeypatch.setattr(mutate, "_suite", suite)

    class Root:
        cache = tmp_path / "cache"
    clean, outcomes = mutate.run(None, Root(), SuiteOptions(), lambda _m: None)  # type: ignore[arg-type]
    assert seen == ["present;\n", "absent;\n"], "the clean tree, then the one mutant that applies"
    assert [(o.name, o.verdict) for o in outcomes] == [
        ("applies", "killed"), ("stale", "NOT APPLIED (pattern not found exactly once)")]
    assert not mutate.self_check_passed(clean, outcomes)
    assert mutate.self_check_passed(clean, outcomes[:1])
    assert "NOT APPLIED" in mutate.table(clean, outcomes)
    assert (tree / mutate.C_FILE).read_text() == "present;\n", "the copy is restored"


def test_a_state_that_does_not_build_says_why(tmp_path: Path, monkeypatch) -> None:
    """`BUILD FAILED` once came with no reason at all (a fragment that no longer survived
    olddefconfig looked like a broken mutant); the first line of the error is now shown."""
    from harness.errors import ConfigError
    from harness.workflows import mutate
    from harness.workflows.options import SuiteOptions

    def refuse(request, progress):
        raise ConfigError("requested Kconfig symbols did not survive olddefconfig:\n"
                          "  CONFIG_WIRELESS: asked n, olddefconfig left y")
    monkeypatch.setattr(mutate, "prepare", refuse)
    built, failed, _secs, why = mutate._suite(tmp_path, tmp_path, SuiteOptions(), tmp_path / "r")
    assert (built, failed) == (False, True)
    assert why == ("build: requested Kconfig symbols did not survive olddefconfig: "
                   "CONFIG_WIRELESS: asked n, olddefconfig left y")
    outcome = mutate.Outcome("m", built, failed, 1.0, why)
    assert outcome.verdict == "BUILD FAILED" and why in mutate.table(outcome, [outcome])


def test_a_mutant_applies_every_edit_or_none() -> None:
    from harness.workflows.mutate import Mutant

    m = Mutant("two edits", "f.c", "a = 1;", "a = 2;", also=(("b = 1;", "b = 3;"),))
    assert m.applied("a = 1;\nb = 1;\n") == "a = 2;\nb = 3;\n"
    assert m.applied("a = 1;\n") is None, "the second line is missing"
    assert m.applied("a = 1;\na = 1;\nb = 1;\n") is None, "the first line is there twice"
