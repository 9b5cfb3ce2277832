"""The plugin's kernel-health promises, shown on a real guest through an inner pytest session:
an undeclared WARN fails a test, a declared one passes, a missing declared one fails; a panic
fails one test and the next passes on a fresh guest; a hang is caught within its deadline."""
from __future__ import annotations

import re
import subprocess
import sys
import time

import pytest

from harness.results.reports import read_junit, split_sections, summary_markdown

pytestmark = pytest.mark.guest

INNER = '''
import pytest

pytestmark = pytest.mark.guest


def test_undeclared_warn(module):
    module.request("trigger what=warn").ok()


def test_declared_warn(module, kernel_log):
    with kernel_log.expect("warning", match=r"iopt_hil\\.rs"):
        module.request("trigger what=warn").ok()


@pytest.mark.expect_splat("warning", match="iopt_hil")
def test_declared_by_marker(module):
    module.request("trigger what=warn").ok()


def test_declared_but_missing(module, kernel_log):
    with kernel_log.expect("warning"):
        module.request("version").ok()


def test_two_warns_when_one_declared(module, kernel_log):
    with kernel_log.expect("warning"):
        module.batch(["trigger what=warn", "trigger what=warn"])


def test_panic(module):
    module.request("trigger what=panic")


def test_after_panic_fresh_guest(pgtable):
    table = pgtable()
    assert table.map(0x1000, 0x2000, 0x1000).ret == 0
    assert table.walk().leaves[0].output == 0x2000


@pytest.mark.deadline(10)
def test_hang(module):
    module.request("trigger what=hang")


def test_after_hang_fresh_guest(module):
    assert module.version() >= 1


def test_wrong_expectation_after_a_map(pgtable):
    table = pgtable()
    assert table.map(0x1000, 0x4000_0000, 0x1000).mapped == 0x1000
    assert table.walk().mapped_bytes() == 0x2000, "deliberately wrong"
'''


def outcome_of(output: str, name: str) -> str:
    m = re.search(rf"::{name} (PASSED|FAILED|ERROR|SKIPPED)", output)
    return m.group(1) if m else "missing"


@pytest.fixture(scope="module")
def inner_run(kernel_build, tmp_path_factory):
    """One inner pytest session (with its own guests) serves every check in this file."""
    where = tmp_path_factory.mktemp("inner")
    (where / "test_inner.py").write_text(INNER)
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "pytest", "-p", "harness.plugin", "-v",
                           "-p", "no:cacheprovider", f"--results={where / 'results'}", f"--junitxml={where / 'junit.xml'}", str(where)],
                          cwd=where, capture_output=True, text=True, timeout=900)
    return proc, time.monotonic() - started, where


def test_undeclared_warn_fails_with_the_splat_text(inner_run):
    proc = inner_run[0]
    out = proc.stdout
    assert outcome_of(out, "test_undeclared_warn") == "FAILED", out[-3000:]
    assert "kernel splat(s) during the test" in out and "iopt_hil.rs" in out


def test_declared_warns_pass_and_wrong_counts_fail(inner_run):
    out = inner_run[0].stdout
    assert outcome_of(out, "test_declared_warn") == "PASSED", out[-3000:]
    assert outcome_of(out, "test_declared_by_marker") == "PASSED", out[-3000:]
    assert outcome_of(out, "test_declared_but_missing") == "FAILED"
    assert outcome_of(out, "test_two_warns_when_one_declared") == "FAILED"
    assert "expected 1 warning splat(s)" in out


def test_panic_fails_one_test_and_the_next_gets_a_fresh_guest(inner_run):
    out = inner_run[0].stdout
    assert outcome_of(out, "test_panic") == "FAILED", out[-3000:]
    assert "panic requested through debugfs" in out  # the console excerpt is in the report
    assert outcome_of(out, "test_after_panic_fresh_guest") == "PASSED", out[-3000:]


def test_hang_is_detected_within_its_deadline(inner_run):
    proc, seconds, _ = inner_run
    out = proc.stdout
    assert outcome_of(out, "test_hang") == "FAILED", out[-3000:]
    assert "guest hung: no console output" in out and "every vCPU stuck" in out, out[-6000:]
    assert outcome_of(out, "test_after_hang_fresh_guest") == "PASSED", out[-3000:]
    assert seconds < 300


def test_a_failure_carries_the_host_walk_and_console_into_junit_and_the_summary(inner_run):
    out, where = inner_run[0].stdout, inner_run[2]
    assert outcome_of(out, "test_wrong_expectation_after_a_map") == "FAILED", out[-3000:]
    cases, props = read_junit(where / "junit.xml")
    case = next(c for c in cases if c.name.endswith("test_wrong_expectation_after_a_map"))
    _, sections = split_sections(case.text)
    walk = sections["host walk of the test's tables at failure"]
    assert "1 leaves, 0x1000 bytes mapped" in walk and "0x40000000" in walk, walk
    assert "guest console during this test" in sections
    summary = summary_markdown(cases, props)
    assert "**host walk of the test's tables at failure**" in summary and "deliberately wrong" in summary
