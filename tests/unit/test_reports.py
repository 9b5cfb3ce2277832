import json

import junitparser
from kcidb_io.schema import LATEST

from harness.results.reports import read_junit, summary_markdown, write_reports

PROPS = {"tree": "7.3.4 git 0123456789ab", "kernel_release": "7.3.4", "fragments": "base",
         "build_key": "abc", "build_id": "f0", "toolchain.rustc": "1.85.1",
         "toolchain.clang": "19", "toolchain.qemu-system-arm": "10.0.13",
         "api_generation": "devres (7.2.x and mainline before 7.3); features: none",
         "build_root": "buildroot-trixie"}


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
    assert "io_pgtable API: devres (7.2.x" in text and "build root: buildroot-trixie" in text
    data = json.loads(kj.read_text())
    LATEST.validate(data)
    assert {t["status"] for t in data["tests"]} == {"PASS", "SKIP"}
    assert data["builds"][0]["misc"]["toolchain.rustc"] == "1.85.1"


def test_failure_sections_are_split_out_for_the_summary(tmp_path):
    from harness.results.reports import CaseResult, split_sections, failure_excerpt

    text = ("def test_x():\n>       assert w.mapped_bytes() == 0x2000\nE       assert 4096 == 8192\n"
            "\ntests/guest/test_x.py:9: AssertionError\n"
            "----------- host walk of the test's tables at failure -----------\n"
            "table 0 (4K granule): 1 leaves\n  iova 0x1000+0x1000 -> 0x40000000\n"
            "----------- guest console during this test -----------\n"
            + "\n".join(f"[ 1.{i:03d}] line {i}" for i in range(100)))
    body, sections = split_sections(text)
    assert "assert 4096 == 8192" in body
    assert list(sections) == ["host walk of the test's tables at failure",
                              "guest console during this test"]
    md = "\n".join(failure_excerpt(CaseResult("t", "failed", 0, "", text), lines=10))
    assert "E       assert 4096 == 8192" in md and "def test_x" not in md
    assert "iova 0x1000+0x1000 -> 0x40000000" in md
    assert "line 99" in md and "line 50" not in md  # the console's tail
