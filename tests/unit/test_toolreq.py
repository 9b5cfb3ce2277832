"""Choosing a build root from the tree's tool minimums, on build roots faked by their stamps."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.build import toolreq
from harness.build.buildroot import STAMP, BuildRoot
from harness.build.toolreq import ToolMinimums, choose_root, version_tuple
from harness.errors import TreeError

TRIXIE = {"rustc": "1.85.1+dfsg1-1+deb13u1", "bindgen": "0.71.1-6", "clang": "1:19.0-63"}
SID = {"rustc": "1.91.0+dfsg1-2", "bindgen": "0.72.0-1", "clang": "1:21.0-70"}


def fake_root(cache: Path, directory: str, versions: dict[str, str]) -> None:
    (cache / directory).mkdir(parents=True)
    (cache / directory / STAMP).write_text(json.dumps({"versions": versions}))


def test_versions_compare_as_numbers() -> None:
    assert version_tuple("1:19.0-63") == (19, 0)
    assert version_tuple("1.85.1+dfsg1-1") == (1, 85, 1)
    assert version_tuple("1.100.0") > version_tuple("1.85.1")
    assert ToolMinimums({"rustc": "1.85.0", "bindgen": "0.71.1", "llvm": "17.0.1"}).unmet(TRIXIE) == []
    assert ToolMinimums({"rustc": "1.86.0"}).unmet(TRIXIE) == ["rustc >= 1.86.0 (has 1.85.1+dfsg1-1+deb13u1)"]


@pytest.fixture
def roots(tmp_path: Path) -> BuildRoot:
    fake_root(tmp_path, "root", TRIXIE)
    fake_root(tmp_path, "root-sid", SID)
    return BuildRoot(tmp_path)


def test_trixie_when_it_suffices(roots: BuildRoot, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(toolreq, "read_minimums", lambda t, r: ToolMinimums({"rustc": "1.85.0"}))
    assert choose_root(Path("/t"), roots, print).suite.name == "trixie"


def test_sid_when_the_tree_needs_a_newer_rustc(roots: BuildRoot, monkeypatch: pytest.MonkeyPatch) -> None:
    said: list[str] = []
    monkeypatch.setattr(toolreq, "read_minimums", lambda t, r: ToolMinimums({"rustc": "1.90.0"}))
    chosen = choose_root(Path("/t"), roots, said.append)
    assert chosen.suite.name == "sid" and chosen.path.name == "root-sid"
    assert any("chosen" in s and "rustc >= 1.90.0" in s for s in said)


def test_no_suite_meets_it(roots: BuildRoot, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(toolreq, "read_minimums", lambda t, r: ToolMinimums({"bindgen": "0.99.0"}))
    with pytest.raises(TreeError, match=r"needs tools no build root offers: trixie: bindgen >= 0.99.0"):
        choose_root(Path("/t"), roots, print)


def test_a_trees_minimums_are_read_once_per_script(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The script runs in the build root once per tool; the answers are kept by its content, so
    the next run of the same tree, or of a tree with the same script, runs nothing."""
    fake_root(tmp_path, "root", TRIXIE)
    root = BuildRoot(tmp_path)
    runs: list[str] = []

    class Done:
        def __init__(self, out: str) -> None:
            self.returncode, self.stdout = 0, out.encode()

    def run(argv, binds=(), **kw):
        runs.append(argv[-1])
        return Done({"rustc": "1.85.0", "bindgen": "0.71.1", "llvm": "15.0.0"}[argv[-1]])
    monkeypatch.setattr(BuildRoot, "run", lambda self, argv, binds=(), **kw: run(argv, binds))
    trees = []
    for name, script in (("a", "v1"), ("b", "v1"), ("c", "v2")):
        (tmp_path / name / "scripts").mkdir(parents=True)
        (tmp_path / name / toolreq.SCRIPT).write_text(f"# {script}\n")
        trees.append(tmp_path / name)
    first = toolreq.read_minimums(trees[0], root)
    assert first.needed == {"rustc": "1.85.0", "bindgen": "0.71.1", "llvm": "15.0.0"}
    assert sorted(runs) == ["bindgen", "llvm", "rustc"]
    assert toolreq.read_minimums(trees[0], root) == first
    assert toolreq.read_minimums(trees[1], root) == first and len(runs) == 3, "same script: kept"
    toolreq.read_minimums(trees[2], root)
    assert len(runs) == 6, "another script is run"
