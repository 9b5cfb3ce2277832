"""verify and bisect-run end to end on a git repository made from the default tree.

The first use builds the private worktree once (~7 min on 2 cores); every later step is an
incremental rebuild of one file. Patches are written by the tests, in a scratch clone.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from kcidb_io.schema import LATEST

from harness.build.cachedir import cache_root
from harness.build.git import IDENTITY, git
from harness.results.reports import read_junit
from harness.build.tree import default_tree

from ..tree_snapshot import differences, snapshot
from .kernel_repo import BREAKS_CONTRACT, HARMLESS, RUST_FILE, Edit, kernel_repo, write_series

pytestmark = pytest.mark.guest
REPO = Path(__file__).resolve().parents[2]
# Enough of the suite to see a contract break, small enough to run many times.
SUITE = ["tests/guest/test_map_basic.py", "tests/guest/test_contract.py"]
ANOTHER_COMMENT = Edit("rust: iommu: pgtable: comment unmap_pages", RUST_FILE,
                       "    pub unsafe fn unmap_pages(",
                       "    // (iopt-hil test patch: another comment)\n    pub unsafe fn unmap_pages(")
UNRELATED_BUILD_BREAK = Edit("kernel: break the build far from iommu", "kernel/fork.c",
                             "#include <linux/slab.h>\n",
                             "#include <linux/slab.h>\n#error \"iopt-hil test: unrelated break\"\n")
ABSTRACTION_BUILD_BREAK = Edit("rust: iommu: pgtable: type error", RUST_FILE,
                               "        (mapped, ret)\n", "        (mapped, ret, 1)\n")


def iopt(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([sys.executable, "-m", "harness", *args], cwd=cwd, text=True,
                          capture_output=True)
    sys.stdout.write(proc.stdout[-6000:])
    sys.stderr.write(proc.stderr[-3000:])
    return proc


def verify(repo: Path, patch: Path, results: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`iopt-hil verify --patch` on `repo`, which must come out of it byte-identical."""
    before = snapshot(repo)
    proc = iopt("verify", "--tree", str(repo), "--patch", str(patch), "--results", str(results),
                *args)
    assert differences(before, snapshot(repo)) == []
    return proc


@pytest.fixture(scope="module")
def repo(kernel_build) -> Path:
    return kernel_repo(cache_root(), default_tree(kernel_build.root).path)


def test_harmless_patch_verifies_clean_and_leaves_the_tree_byte_identical(repo, tmp_path):
    patches = write_series(repo, "HEAD", [HARMLESS], tmp_path)
    results = tmp_path / "results"
    proc = verify(repo, patches[0], results, *SUITE)
    assert proc.returncode == 0, proc.stdout[-3000:]
    report = json.loads((results / "verify.json").read_text())
    assert report["regressed"] is False
    assert report["tally"].get("unchanged", 0) >= 20 and set(report["tally"]) <= {"unchanged"}
    assert report["base"]["commit"] == git(repo, "rev-parse", "HEAD").strip()
    assert report["head"]["commit"] != report["base"]["commit"]
    text = (results / "verify.md").read_text()
    assert "No regression" in text and "Tested-with: iopt-hil" in text and "+ 1 patch(es)" in text
    for side in ("base", "head"):
        cases, props = read_junit(results / side / "junit.xml")
        assert cases and all(c.outcome in ("passed", "skipped") for c in cases)
        assert props["tree"].split("git ")[1].startswith(report[side]["commit"][:12])
        LATEST.validate(json.loads((results / side / "kcidb.json").read_text()))
        assert (results / side / "build.log").stat().st_size > 0
        assert list((results / side).glob("boot-*/console.log"))
    # head is an incremental rebuild of base in the same build directory, not a second build
    head_log = (results / "head" / "build.log").read_text()
    assert "### allnoconfig" not in head_log
    assert head_log.count("  CC ") < 50, "head rebuilt far more than one Rust file"


def test_contract_break_in_a_series_is_a_regression_naming_the_commit(repo, tmp_path):
    patches = write_series(repo, "HEAD", [HARMLESS, BREAKS_CONTRACT], tmp_path)
    results = tmp_path / "results"
    proc = verify(repo, patches[0].parent, results, "--each", *SUITE)
    assert proc.returncode == 1, proc.stdout[-3000:]
    report = json.loads((results / "verify.json").read_text())
    assert report["regressed"] is True
    first, second = report["series"]
    assert first["ok"] and not first["regressions"]
    assert not second["ok"] and "report half the mapped length" in second["label"]
    assert any("test_one_leaf_walks_and_translates" in name for name in second["regressions"])
    text = (results / "verify.md").read_text()
    assert "REGRESSION" in text and "REGRESSED: `" in text
    assert "Tested-with" not in text
    # the failure is explained: the test's assertion shows the short mapped length
    cases, _ = read_junit(next(results.glob("commit-02-*")) / "junit.xml")
    failed = [c for c in cases if c.outcome == "failed"]
    assert failed and any("mapped" in (c.text + c.message) for c in failed)


def test_bisect_run_finds_the_commit_that_breaks_the_contract(repo, tmp_path):
    master = git(repo, "rev-parse", "HEAD").strip()
    patches = write_series(repo, master, [HARMLESS, BREAKS_CONTRACT, ANOTHER_COMMENT], tmp_path)
    git(repo, "checkout", "-q", "-b", "iopt-bisect-test")
    try:
        git(repo, "am", "-q", *map(str, patches), env=IDENTITY)
        git(repo, "bisect", "start", "HEAD", master)
        # default --results: must land in the harness repository, not in the kernel tree
        run = subprocess.run(["git", "bisect", "run", sys.executable, "-m", "harness", "bisect-run",
                              "tests/guest/test_map_basic.py"], cwd=repo, text=True,
                             capture_output=True)
        sys.stdout.write(run.stdout[-6000:])
        assert run.returncode == 0, run.stderr[-3000:]
        assert "is the first bad commit" in run.stdout
        assert BREAKS_CONTRACT.subject in run.stdout
        assert git(repo, "status", "--porcelain", "--untracked-files=all") == ""
        assert list((REPO / "results" / "bisect").glob("bisect-*/junit.xml"))
    finally:
        git(repo, "bisect", "reset")
        git(repo, "checkout", "-q", "--force", "master")
        git(repo, "branch", "-q", "-D", "iopt-bisect-test")


@pytest.mark.parametrize("edit,status", [(UNRELATED_BUILD_BREAK, 125), (ABSTRACTION_BUILD_BREAK, 1)],
                         ids=["unrelated-break-skips", "abstraction-break-is-bad"])
def test_bisect_run_build_failures(repo, tmp_path, edit, status):
    master = git(repo, "rev-parse", "HEAD").strip()
    patches = write_series(repo, master, [edit], tmp_path)
    git(repo, "checkout", "-q", "-b", "iopt-build-break")
    try:
        git(repo, "am", "-q", str(patches[0]), env=IDENTITY)
        proc = iopt("bisect-run", "--results", str(tmp_path / "bisect"),
                    "tests/guest/test_map_basic.py::test_permissions_and_memory_type", cwd=repo)
        assert proc.returncode == status, proc.stdout[-3000:]
        where = "kernel/fork.c" if status == 125 else "rust/kernel/iommu/pgtable.rs"
        assert where in proc.stdout
    finally:
        git(repo, "checkout", "-q", "--force", "master")
        git(repo, "branch", "-q", "-D", "iopt-build-break")


def test_bisect_run_with_an_unknown_test_aborts_the_bisection(repo):
    proc = iopt("bisect-run", "tests/guest/test_nope.py", cwd=repo)
    assert proc.returncode == 128 and "no such test file" in proc.stderr
