"""Per-test verdicts between base and head runs."""
from harness.results.comparison import compare, regressions, tally, verdict
from harness.results.reports import CaseResult


def case(name, outcome, text=""):
    return CaseResult(name, outcome, 0.1, text[:20], text)


def test_verdict_table():
    assert verdict("passed", "passed") == "unchanged"
    assert verdict("passed", "failed") == "regressed"
    assert verdict("skipped", "error") == "regressed"
    assert verdict("failed", "passed") == "fixed"
    assert verdict("error", "failed") == "still failing"
    assert verdict(None, "failed") == "new failure"
    assert verdict(None, "passed") == "new"
    assert verdict("passed", None) == "removed"
    assert verdict("passed", "skipped") == "now skipped"
    assert verdict("skipped", "passed") == "no longer skipped"


def test_compare_keeps_head_order_and_failure_text_of_regressions_only():
    base = [case("a", "passed"), case("b", "failed", "old"), case("c", "passed"), case("gone", "passed")]
    head = [case("c", "failed", "Traceback\nAssertionError: mapped 2048 != 4096"),
            case("a", "passed"), case("b", "passed"), case("fresh", "error", "boom")]
    changes = compare(base, head)
    assert [(c.name, c.verdict) for c in changes] == [
        ("c", "regressed"), ("a", "unchanged"), ("b", "fixed"), ("fresh", "new failure"),
        ("gone", "removed")]
    assert [c.name for c in regressions(changes)] == ["c", "fresh"]
    assert "mapped 2048" in changes[0].detail and changes[2].detail == ""
    assert tally(changes) == {"regressed": 1, "new failure": 1, "fixed": 1, "unchanged": 1,
                              "removed": 1}


def test_identical_runs_have_no_regression():
    runs = [case("x", "passed"), case("y", "skipped"), case("z", "failed")]
    changes = compare(runs, runs)
    assert not regressions(changes)
    assert tally(changes) == {"unchanged": 2, "still failing": 1}
