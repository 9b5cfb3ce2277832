"""The debug kernel (`--kconfig debug`: KASAN, KFENCE, kmemleak, lockdep, list debugging, fault
injection) runs the checks that need it and the ones most likely to make it report: the
hardening and concurrency stress tests, the fuzz test and the racing processes. Any report the
kernel prints fails the test that provoked it (the kernel-health machinery), so "passed" here
means "no KASAN, lockdep or kmemleak report" as well as the tests' own assertions."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from harness.results.reports import read_junit

pytestmark = pytest.mark.guest
REPO = Path(__file__).resolve().parents[2]
FILES = ("tests/guest/test_debug_kernel.py", "tests/guest/test_hardening.py",
         "tests/guest/test_fuzz.py", "tests/guest/test_races.py")


# A kernel build of its own when the cache is cold (~10-15 min on 2 cores beside other work).
@pytest.mark.timeout(3600)
def test_the_debug_kernel_runs_its_checks_and_reports_nothing(kernel_build, tmp_path):
    argv = [sys.executable, "-m", "harness", "run", "--kconfig", "debug",
            "--results", str(tmp_path), *FILES]
    proc = subprocess.run(argv, cwd=REPO, text=True, capture_output=True)
    sys.stdout.write(proc.stdout[-3000:])
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    cases, props = read_junit(tmp_path / "junit.xml")
    outcome = {c.name: c.outcome for c in cases}
    debug_only = {n: o for n, o in outcome.items() if n.startswith(FILES[0])}
    # the checks that skip on every other kernel ran here, and each of them passed
    assert len(debug_only) >= 4 and set(debug_only.values()) == {"passed"}, debug_only
    assert any("test_every_verb_pair_on_one_table_from_several_processes" in n
               and o == "passed" for n, o in outcome.items()), outcome
    ours = {n: o for n, o in outcome.items() if n.startswith(FILES)}
    assert len(ours) >= 15 and "skipped" not in ours.values(), ours
    assert props["build_key"] != kernel_build.build.key  # its own build, not the default one
