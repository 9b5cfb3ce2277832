"""KUnit's verdicts come from KUnit's own record (debugfs), so a console that loses a line
under load (it happened in CI: one case's `ok` line never reached the host) loses no case."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from harness.guest import kunit

pytestmark = pytest.mark.guest
MODULE = Path(__file__).resolve().parents[2] / "images" / "module"
_SUITE = re.compile(r"#\[kunit_tests\((\w+)\)\]")
_CASE = re.compile(r"#\[test\]\s*\n\s*fn (\w+)")


def module_cases() -> set[str]:
    """suite/case of every KUnit case in the module's sources (one suite per file)."""
    cases = set()
    for source in MODULE.rglob("*.rs"):
        text = source.read_text()
        if suite := _SUITE.search(text):
            cases |= {f"{suite.group(1)}/{c}" for c in _CASE.findall(text[suite.end():])}
    assert cases, "no KUnit case found in the module's sources"
    return cases


def _reported(run: kunit.KunitRun) -> set[str]:
    return {path for result in run.document.results for path, _ in result.leaves()}


def test_the_modules_suites_are_read_from_kunits_record(guest):
    run = kunit.boot_suites(guest)
    assert run.source == "debugfs"
    assert run.document.complete
    missing = module_cases() - _reported(run)
    assert not missing, f"cases in the module's sources that KUnit's record lacks: {missing}"


def test_a_line_the_console_lost_loses_no_case(guest, monkeypatch):
    lost = sorted(module_cases())[0].split("/")[1]
    result_line = re.compile(rf"\bok \d+ {lost}\s*$")
    everything = guest.console.since
    assert any(result_line.search(line.text) for line in everything(0)), \
        f"the console never showed {lost}'s result line: nothing to lose"
    monkeypatch.setattr(guest.console, "since", lambda mark: [
        line for line in everything(mark) if not result_line.search(line.text)])
    run = kunit.boot_suites(guest)
    assert any(path.endswith(f"/{lost}") for path in _reported(run)), \
        f"{lost}: its line was taken from the console and the run lost the case"
