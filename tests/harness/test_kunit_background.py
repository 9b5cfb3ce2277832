"""KUnit off the critical path: once a build directory has listed its KUnit cases, later runs
collect them from that list and run KUnit in a guest of their own while the rest of the suite
runs; a run that deselects every case boots no KUnit guest; a listed case KUnit no longer
reports fails, and a new one that fails is reported by the check item."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from harness.plugin.kunit_items import NEW_CASES, case_list_file
from harness.results.reports import read_junit
from harness.timeline import read

pytestmark = pytest.mark.guest
REPO = Path(__file__).resolve().parents[2]
LISTING = REPO / "tests" / "guest" / "in_kernel.kunit"


def _run(results: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "harness", "run", "--results", str(results), *args],
                          cwd=REPO, text=True, capture_output=True)


def _listed(kernel_build, tmp_path: Path) -> Path:
    """The case list of the default listing, made by a first run if there is none yet."""
    path = case_list_file(kernel_build.root.cache, kernel_build.build, LISTING)
    if not path.exists():
        proc = _run(tmp_path / "first", str(LISTING))
        assert proc.returncode == 0, proc.stdout[-3000:]
    assert path.exists(), "a run with KUnit left no case list"
    return path


def test_kunit_runs_beside_the_suite_from_the_last_runs_list(kernel_build, tmp_path):
    listed = json.loads(_listed(kernel_build, tmp_path).read_text())
    results = tmp_path / "results"
    proc = _run(results, "tests/guest/test_map_basic.py", str(LISTING))
    assert proc.returncode == 0, proc.stdout[-3000:]
    cases, _ = read_junit(results / "junit.xml")
    kunit = [i for i, c in enumerate(cases) if "in_kernel" in c.name]
    assert len(kunit) == len(listed) + 1, (len(kunit), len(listed))  # + the new-cases check
    assert all(cases[i].outcome == "passed" for i in kunit), [cases[i] for i in kunit]
    assert min(kunit) > max(i for i in range(len(cases)) if i not in kunit), \
        "KUnit's items must run last (their guest runs meanwhile)"
    phases = {p.name: p for p in read(results / "timings.json")}
    k, suite = phases["kunit (boot and suites)"], phases["suite: test_map_basic.py"]
    assert k.start < suite.start + suite.seconds and suite.start < k.start + k.seconds, \
        f"KUnit ran before or after the suite, not beside it: {k} {suite}"


def test_deselecting_every_kunit_case_boots_no_kunit_guest(kernel_build, tmp_path):
    _listed(kernel_build, tmp_path)
    results = tmp_path / "results"
    proc = _run(results, "-k", "test_one_leaf", "tests/guest/test_map_basic.py", str(LISTING))
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert not (results / "kunit").exists(), "a KUnit guest booted for no selected case"
    assert not [p for p in read(results / "timings.json") if p.name.startswith("kunit")]


def test_a_listed_case_not_reported_fails_and_a_new_failing_case_is_caught(kernel_build, tmp_path):
    """A listing whose module is not in the build, with a planted list: the planted case is not
    reported (fails), and KUnit's setup failure, a case the list lacked, fails the check item."""
    listing = tmp_path / "planted.kunit"
    listing.write_text("no-such-kunit-module\n")
    planted = case_list_file(kernel_build.root.cache, kernel_build.build, listing)
    planted.parent.mkdir(parents=True, exist_ok=True)
    planted.write_text(json.dumps(["no-such-kunit-module::a_case"]))
    try:
        results = tmp_path / "results"
        proc = _run(results, str(listing))
        assert proc.returncode == 1, proc.stdout[-3000:]
        cases = {c.name.rsplit("::", 1)[-1]: c for c in read_junit(results / "junit.xml")[0]}
        assert set(cases) == {"a_case", NEW_CASES}, sorted(cases)
        assert cases["a_case"].outcome == "failed"
        assert "no KUnit module" in cases["a_case"].message + cases["a_case"].text
        assert cases[NEW_CASES].outcome == "failed"
        assert "no KUnit module" in cases[NEW_CASES].message + cases[NEW_CASES].text
    finally:
        planted.unlink(missing_ok=True)
