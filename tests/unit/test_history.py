"""The last run's failures: kept across narrowed runs, forgotten once they pass."""
from __future__ import annotations

from harness.results import history


def test_failures_are_kept_until_the_test_passes_again(tmp_path):
    assert history.failed_last(tmp_path) == set()
    history.record(tmp_path, {"t::a": False, "t::b": True, "t::c": False})
    assert history.failed_last(tmp_path) == {"t::a", "t::c"}
    history.record(tmp_path, {"t::a": True})  # a narrowed run: c did not run, stays
    assert history.failed_last(tmp_path) == {"t::c"}
    assert not list(tmp_path.glob(".last-failed*")), "no temporary file left"


def test_an_unreadable_record_orders_nothing(tmp_path):
    for text in ("{not json", '{"t::a": 1}', '["t::a", 3]'):
        (tmp_path / history.FILE).write_text(text)
        assert history.failed_last(tmp_path) <= {"t::a"}
