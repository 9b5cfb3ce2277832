import json

import junitparser
from kcidb_io.schema import LATEST

from harness.reports import read_junit, summary_markdown, write_reports

PROPS = {"tree": "7.3.4 git 0123456789ab", "kernel_release": "7.3.4", "fragments": "base",
         "build_key": "abc", "build_id": "f0", "toolchain.rustc": "1.85.1",
         "toolchain.clang": "19", "toolchain.qemu-system-arm": "10.0.13"}


def _junit(tmp_path, fail: bool):
    suite = junitparser.TestSuite("pytest")
    for key, value in PROPS.items():
        suite.add_property(key, value)
    ok = junitparser.TestCase("test_one_leaf[4K]", "tests.guest.test_map_basic", 0.5)
    skip = junitparser.TestCase("test_alloc", "tests.guest.test_debug_kernel", 0.0)
    skip.result = [junitparser.Skipped("needs the debug kernel")]
    cases = [ok, skip]
    if fail:
        bad = junitparser.TestCase("test_overlap", "tests.guest.test_contract", 1.5)
        failure = junitparser.Failure("expected 1 warning splat(s)")
        failure.text = "long\ntraceback\nWARNING: x"
        bad.result = [failure]
        cases.append(bad)
    suite.add_testcases(cases)
    xml = junitparser.JUnitXml()
    xml.add_testsuite(suite)
    path = tmp_path / "junit.xml"
    xml.write(str(path))
    return path


def test_summary_lists_failures_and_no_mail_line(tmp_path):
    cases, props = read_junit(_junit(tmp_path, fail=True))
    text = summary_markdown(cases, props)
    assert "1 passed, 1 failed, 1 skipped" in text
    assert "FAILED: `tests/guest/test_contract.py::test_overlap`" in text and "WARNING: x" in text
    assert "Tested-with" not in text


def test_all_passed_gives_the_mailing_list_line_and_valid_kcidb(tmp_path):
    text, md, kj = write_reports(_junit(tmp_path, fail=False), tmp_path)
    assert "Tested-with: iopt-hil (1 io_pgtable tests passed, 1 skipped) on 7.3.4 git" in text
    assert md.read_text() == text
    data = json.loads(kj.read_text())
    LATEST.validate(data)
    assert {t["status"] for t in data["tests"]} == {"PASS", "SKIP"}
    assert data["builds"][0]["misc"]["toolchain.rustc"] == "1.85.1"
