"""Both released generations of the Rust io_pgtable API: the whole guest suite on Debian's
linux-source-7.2 (IoPageTable<F>, new_raw) passes exactly as on the default 7.3 tree
(IoPageTable<'a, F>), each from its own cached build; a 6.x tree without the abstraction is
refused in one line before anything is built."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from harness.build.cachedir import cache_root
from harness.plugin.kunit_items import NEW_CASES
from harness.plugin.runner import default_guests
from harness.results.reports import read_junit

pytestmark = pytest.mark.guest
REPO = Path(__file__).resolve().parents[2]
OTHER_GENERATION = "debian:linux-source-7.2"
DMA_TESTS = "tests/guest/test_dma.py::"


def run_suite(tree: str | None, results: Path) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "harness", "run", "--results", str(results)]
    argv += ["--tree", tree] if tree else []
    proc = subprocess.run(argv, cwd=REPO, text=True, capture_output=True)
    sys.stdout.write(proc.stdout[-3000:])
    return proc


def outcomes(results: Path) -> tuple[dict[str, str], dict[str, str]]:
    cases, props = read_junit(results / "junit.xml")
    return {c.name: c.outcome for c in cases}, props


def ours(cases: dict[str, str]) -> dict[str, str]:
    """Everything but the kernel's own boot-time KUnit suites and the KUnit list check (there
    only when a run collected from the last run's case list)."""
    return {n: o for n, o in cases.items() if ("kunit/boot.py::" not in n or "::iopt_hil_" in n)
            and not n.endswith(NEW_CASES)}


def features(props: dict[str, str]) -> set[str]:
    """The kernel features the API probe found, from the run's `api_generation` property."""
    return set(props["api_generation"].rpartition("features: ")[2].split(","))


# A kernel build of its own when the cache is cold (~10-15 min on 2 cores beside other work).
@pytest.mark.timeout(3600)
def test_the_whole_suite_passes_on_both_api_generations(kernel_build, tmp_path):
    old = run_suite(OTHER_GENERATION, tmp_path / "7.2")
    assert old.returncode == 0, old.stdout[-4000:]
    new = run_suite(None, tmp_path / "7.3")
    assert new.returncode == 0, new.stdout[-4000:]
    old_cases, old_props = outcomes(tmp_path / "7.2")
    new_cases, new_props = outcomes(tmp_path / "7.3")
    assert old_props["api_generation"].startswith("devres"), old_props
    assert new_props["api_generation"].startswith("lifetime"), new_props
    assert old_props["kernel_release"].startswith("7.2.") and new_props["kernel_release"].startswith("7.3.")
    assert old_props["build_key"] != new_props["build_key"]
    assert old_props["build_root"] == new_props["build_root"] == "buildroot-trixie"
    # The same tests of ours, and nothing skipped on 7.2 that runs on 7.3. (The kernel's own
    # built-in KUnit suites that ran at boot differ by version: 7.3 has rust_kernel_fmt,
    # rust_netlink, ... that 7.2 lacks. They are the kernel's, not the suite's.)
    old_ours, new_ours = ours(old_cases), ours(new_cases)
    assert set(old_ours) == set(new_ours)
    ran_on_new = {n for n, o in new_ours.items() if o == "passed"}
    assert {n for n, o in old_ours.items() if o == "passed"} == ran_on_new
    # device DMA included: the module drives the SMMU on both generations
    assert "dma" in features(old_props) and "dma" in features(new_props)
    assert any(n.startswith(DMA_TESTS) for n in ran_on_new)
    assert len(ran_on_new) > 100 and any("iopt_hil_record" in n for n in ran_on_new)
    # a whole-suite run spreads over several guests where the cores allow (each its gwN/)
    workers = list((tmp_path / "7.3").glob("gw*"))
    assert (len(workers) >= 2) == (default_guests([], False) >= 2), workers


def test_a_tree_without_the_abstraction_is_refused_in_one_line():
    builds = cache_root() / "builds"
    before = set(builds.iterdir()) if builds.exists() else set()
    proc = subprocess.run([sys.executable, "-m", "harness", "build", "--tree",
                           "debian:linux-source-6.12"], cwd=REPO, text=True, capture_output=True)
    assert proc.returncode == 2
    errors = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and "lacks rust/kernel/iommu/pgtable.rs" in errors[0], proc.stderr
    assert "Traceback" not in proc.stderr
    assert "make" not in proc.stdout
    assert (set(builds.iterdir()) if builds.exists() else set()) == before, "a build was started"
