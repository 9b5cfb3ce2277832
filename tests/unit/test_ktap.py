from pathlib import Path

from harness.guest import ktap

GOLDEN = Path(__file__).parent / "golden"


def test_nested_suites_params_and_skips():
    doc = ktap.parse((GOLDEN / "kunit-nested.ktap").read_text().splitlines())
    assert doc.complete and doc.planned == 2
    suite, params = doc.results
    assert (suite.name, suite.status) == ("io-pgtable-arm-test", "passed")
    assert [(c.name, c.status) for c in suite.children] == [
        ("arm_lpae_do_selftests", "passed"), ("needs_hw", "skipped")]
    assert suite.children[1].reason == "no hardware here"
    leaves = dict(params.leaves())
    assert leaves["params/widths/4K"].status == "passed"
    assert leaves["params/widths/64K"].status == "failed"
    assert params.status == "failed"


def test_output_cut_short_is_incomplete():
    doc = ktap.parse((GOLDEN / "kunit-crashed.ktap").read_text().splitlines())
    assert not doc.complete and doc.results == []
    assert [r.name for r in doc.orphans] == ["first"]


def test_lines_before_the_header_are_ignored():
    doc = ktap.parse(["ok 1 noise", "KTAP version 1", "1..1", "ok 1 real"])
    assert [r.name for r in doc.results] == ["real"] and doc.complete
