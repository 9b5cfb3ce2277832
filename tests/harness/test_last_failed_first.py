"""A run starts with the tests that failed last time: after a fix, `-x` is red or on its way
to green at once, not after everything the suite orders before the test."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from harness.results import history
from harness.results.reports import read_junit

pytestmark = pytest.mark.guest  # `iopt-hil run` prepares the build first
REPO = Path(__file__).resolve().parents[2]

TESTS = '''
import os
import pytest


@pytest.mark.parametrize("i", range(10))
def test_n(i):
    assert not (i == 7 and os.path.exists({flag!r})), "still broken"
'''


def _run(tests: Path, results: Path, *args: str) -> list:
    proc = subprocess.run([sys.executable, "-m", "harness", "run", "--no-kunit", "--results",
                           str(results), "-n", "0", *args, str(tests)], cwd=REPO, text=True,
                          capture_output=True)
    assert proc.returncode in (0, 1), proc.stdout[-3000:]
    return read_junit(results / "junit.xml")[0]


def test_the_tests_that_failed_last_time_run_first(kernel_build, tmp_path):
    flag = tmp_path / "broken"
    flag.touch()
    tests = tmp_path / "test_fix.py"
    tests.write_text(TESTS.format(flag=str(flag)))
    results = tmp_path / "results"
    first = _run(tests, results)
    assert [c.outcome for c in first].count("failed") == 1 and len(first) == 10
    (kept,) = history.failed_last(results)
    assert kept.endswith("::test_n[7]"), kept  # a file outside the rootdir: no path in the id
    # still broken: the one test runs first and -x stops there
    again = _run(tests, results, "-x")
    assert [(c.name.split("::")[-1], c.outcome) for c in again] == [("test_n[7]", "failed")]
    flag.unlink()  # fixed: it runs first, passes, and is forgotten
    fixed = _run(tests, results, "-x")
    assert fixed[0].name.endswith("test_n[7]") and all(c.outcome == "passed" for c in fixed)
    assert len(fixed) == 10 and history.failed_last(results) == set()
