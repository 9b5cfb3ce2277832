"""KUnit's debugfs record, as the harness reads it: one dump of every suite's results file,
split per suite and merged into one document with the same case paths the console gives."""
from __future__ import annotations

from pathlib import Path

from harness.guest import ktap
from harness.guest.kunit import SUITE_MARK, merge, split_suite_dump

RECORD = """KTAP version 1
1..1
    KTAP version 1
    # Subtest: {suite}
    1..2
    ok 1 first
    # second: EXPECTATION FAILED at request.rs:12
    not ok 2 second
# {suite}: pass:1 fail:1 skip:0 total:2
ok 1 {suite}"""


def _dump(*suites: str) -> str:
    return "\n".join(f"{SUITE_MARK}{s}\n{RECORD.format(suite=s)}" for s in suites) + "\n"


def test_each_suite_is_its_own_document():
    split = split_suite_dump("noise before any suite\n" + _dump("alpha", "beta"))
    assert sorted(split) == ["alpha", "beta"]
    doc = ktap.parse(split["beta"].splitlines())
    assert doc.complete and [r.name for r in doc.results] == ["beta"]


def test_merged_suites_give_the_consoles_case_paths():
    docs = [ktap.parse(t.splitlines()) for t in split_suite_dump(_dump("alpha", "beta")).values()]
    merged = merge(docs)
    leaves = {path: leaf.status for r in merged.results for path, leaf in r.leaves()}
    assert leaves == {"alpha/first": "passed", "alpha/second": "failed",
                      "beta/first": "passed", "beta/second": "failed"}
    assert merged.complete and merged.planned == 2
    second = dict(merged.results[0].leaves())["alpha/second"]
    assert "EXPECTATION FAILED" in "\n".join(second.diagnostics)


def test_a_suite_cut_short_leaves_the_merge_incomplete():
    cut = "\n".join(RECORD.format(suite="gamma").splitlines()[:6])
    merged = merge([ktap.parse(RECORD.format(suite="alpha").splitlines()), ktap.parse(cut.splitlines())])
    assert not merged.complete
    assert [r.name for r in merged.orphans] == ["first"]


def test_no_suite_recorded_is_an_empty_dump():
    assert split_suite_dump("") == {}


def test_a_real_guests_record():
    """What a 7.3 guest's debugfs held after boot: the module's two suites and the kernel's
    built-in Rust suites, every case passed, with the `.speed` attribute lines as diagnostics."""
    text = (Path(__file__).parent / "golden" / "kunit-debugfs-7.3.txt").read_text()
    suites = split_suite_dump(text)
    assert {"iopt_hil_record", "iopt_hil_request", "rust_kernel_fmt"} <= set(suites)
    merged = merge([ktap.parse(t.splitlines()) for t in suites.values()])
    assert merged.complete and merged.planned == len(suites)
    leaves = dict(leaf for r in merged.results for leaf in r.leaves())
    assert leaves["iopt_hil_request/prot_names_and_numbers"].status == "passed"
    assert len([p for p in leaves if p.startswith("iopt_hil_")]) == 25
    assert all(leaf.status == "passed" for leaf in leaves.values())
