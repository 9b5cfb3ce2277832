"""`-x` on several guests stops the whole run at the first failure, not after each guest has
worked through its share of the suite (pytest-xdist alone lets the others finish theirs)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from harness.results.reports import read_junit

pytestmark = pytest.mark.guest
REPO = Path(__file__).resolve().parents[2]

TESTS = '''
import time
import pytest


@pytest.mark.parametrize("i", range(40))
def test_share(module, i):
    assert i != 0, "the deliberate first failure"
    module.request("version")
    time.sleep(0.3)
'''


def test_the_first_failure_stops_every_guest(kernel_build, tmp_path):
    tests = tmp_path / "test_shares.py"
    tests.write_text(TESTS)
    results = tmp_path / "results"
    proc = subprocess.run([sys.executable, "-m", "harness", "run", "--no-kunit", "--results",
                           str(results), "-n", "2", "--dist", "worksteal", "-x", str(tests)],
                          cwd=REPO, text=True, capture_output=True)
    assert proc.returncode in (1, 2), proc.stdout[-3000:]
    cases, _ = read_junit(results / "junit.xml")
    failed = [c.name for c in cases if c.outcome == "failed"]
    ran = [c.name for c in cases if c.outcome == "passed"]
    assert len(failed) == 1 and failed[0].endswith("test_share[0]"), failed
    # worksteal gave the second guest tests 20-39 (6 s of them); it stops after the one it
    # was running when the first guest's test failed
    assert len(ran) < 10, f"the other guest went on after the failure: {ran}"
