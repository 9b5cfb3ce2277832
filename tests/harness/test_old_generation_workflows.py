"""verify, bisect-run and mutate on a git tree of the other API generation (7.2: IoPageTable<F>,
new_raw), one test each. They share one private checkout, so one full build serves all three."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.build.buildroot import BuildRoot
from harness.build.cachedir import cache_root
from harness.build.git import IDENTITY, git
from harness.build.tree import packaged_tree
from harness.results.reports import read_junit

from ..tree_snapshot import differences, snapshot
from .kernel_repo import BREAKS_CONTRACT, kernel_repo, write_series
from .test_verify import iopt, verify

pytestmark = pytest.mark.guest
SUITE = ["tests/guest/test_map_basic.py"]


@pytest.fixture(scope="module")
def repo() -> Path:
    cache = cache_root()
    source = packaged_tree(BuildRoot(cache).ensure(), "linux-source-7.2")
    return kernel_repo(cache, source.path, name="linux-7.2-git")


def test_verify_finds_a_contract_break_on_the_7_2_generation(repo, tmp_path):
    patches = write_series(repo, "HEAD", [BREAKS_CONTRACT], tmp_path)
    results = tmp_path / "results"
    proc = verify(repo, patches[0], results, *SUITE)
    assert proc.returncode == 1, proc.stdout[-3000:]
    report = json.loads((results / "verify.json").read_text())
    assert report["regressed"] is True
    regressed = [c["name"] for c in report["changes"] if c["verdict"] == "regressed"]
    assert any("test_one_leaf_walks_and_translates" in n for n in regressed), report["tally"]
    _, props = read_junit(results / "base" / "junit.xml")
    assert props["api_generation"].startswith("devres") and props["kernel_release"].startswith("7.2.")


def test_bisect_run_tells_good_from_bad_on_the_7_2_generation(repo, tmp_path):
    master = git(repo, "rev-parse", "HEAD").strip()
    patches = write_series(repo, master, [BREAKS_CONTRACT], tmp_path)
    git(repo, "checkout", "-q", "-b", "iopt-bisect-72")
    try:
        git(repo, "am", "-q", str(patches[0]), env=IDENTITY)
        bad = iopt("bisect-run", "--results", str(tmp_path / "bad"), *SUITE, cwd=repo)
        assert bad.returncode == 1, bad.stdout[-3000:]
        git(repo, "checkout", "-q", master)
        good = iopt("bisect-run", "--results", str(tmp_path / "good"), *SUITE, cwd=repo)
        assert good.returncode == 0, good.stdout[-3000:]
        assert git(repo, "status", "--porcelain", "--untracked-files=all") == ""
    finally:
        git(repo, "checkout", "-q", "--force", "master")
        git(repo, "branch", "-q", "-D", "iopt-bisect-72")


def test_mutate_kills_a_mutant_on_the_7_2_generation(repo):
    before = snapshot(repo)
    proc = iopt("mutate", "--tree", str(repo), "--only", "mapped counts one page")
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert "| mapped counts one page | killed |" in proc.stdout
    assert "| (clean tree) | passes |" in proc.stdout
    assert differences(before, snapshot(repo)) == []
