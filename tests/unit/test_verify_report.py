"""verify's report and exit status from made-up evaluations (the real thing is in
tests/harness/test_verify.py), and its refusals before anything is built."""
from pathlib import Path

from harness.cli import main
from harness.results.comparison import compare
from harness.results.reports import CaseResult
from harness.workflows.suite_run import Evaluation
from harness.workflows.verify import SeriesStep, VerifyReport, as_json, markdown
from harness.build.worktree import Revision

PROPS = {"tree": "7.3.4 git 0123456789ab", "kernel_release": "7.3.4", "fragments": "base",
         "toolchain.qemu-system-arm": "10.0", "toolchain.rustc": "1.85", "toolchain.clang": "19"}


def ev(label, outcomes, built=True):
    cases = [CaseResult(n, o, 0.1, "assert 2048 == 4096" if o == "failed" else "",
                        "E   assert 2048 == 4096" if o == "failed" else "") for n, o in outcomes]
    return Evaluation(Revision(label * 40, label), Path("/r") / label, "" if built else "make failed",
                      pytest_status=0 if all(o != "failed" for _, o in outcomes) else 1,
                      cases=cases, props=PROPS)


def test_clean_head_has_no_regression_and_a_mail_line():
    base = ev("a", [("t1", "passed"), ("t2", "passed")])
    head = ev("b", [("t1", "passed"), ("t2", "passed")])
    report = VerifyReport(Path("/src/linux"), base, head, compare(base.cases, head.cases))
    assert not report.regressed
    text = markdown(report)
    assert "No regression" in text and "Tested-with: iopt-hil (2 io_pgtable tests passed" in text


def test_regression_is_reported_with_the_failure_text():
    base = ev("a", [("t1", "passed"), ("t2", "failed")])
    head = ev("b", [("t1", "failed"), ("t2", "passed")])
    report = VerifyReport(Path("/src/linux"), base, head, compare(base.cases, head.cases))
    assert report.regressed
    text = markdown(report)
    assert "## REGRESSED: `t1`" in text and "2048 == 4096" in text and "- fixed: `t2`" in text
    assert "Tested-with" not in text
    assert as_json(report)["tally"] == {"regressed": 1, "fixed": 1}


def test_a_bad_commit_in_the_middle_of_a_series_fails_verify_even_if_head_is_fine():
    base = ev("a", [("t1", "passed")])
    middle = ev("b", [("t1", "failed")])
    broken_build = ev("c", [], built=False)
    head = ev("d", [("t1", "passed")])
    series = [SeriesStep(middle, compare(base.cases, middle.cases)),
              SeriesStep(broken_build, []), SeriesStep(head, compare(base.cases, head.cases))]
    report = VerifyReport(Path("/src/linux"), base, head, compare(base.cases, head.cases), series)
    assert report.regressed
    assert [s["ok"] for s in as_json(report)["series"]] == [False, False, True]
    assert "| c | `cccccccccccc` | NO | does not build |" in markdown(report)


def test_verify_refuses_a_tree_that_is_not_git(tmp_path, capsys):
    assert main(["verify", "--tree", str(tmp_path)]) == 2
    assert "not a git repository" in capsys.readouterr().err


def test_verify_needs_a_tree(capsys):
    assert main(["verify"]) == 2
    assert "verify needs --tree" in capsys.readouterr().err


def test_a_head_whose_suite_did_not_run_is_not_a_pass():
    base = ev("a", [("t1", "passed")])
    head = ev("b", [])
    head.pytest_status = 2  # e.g. a usage error in the child: no junit, no cases
    report = VerifyReport(Path("/src/linux"), base, head, compare(base.cases, head.cases))
    assert report.regressed
    assert "The suite did not run on head" in markdown(report)


def test_bisect_run_usage_errors_abort_the_bisection(tmp_path, capsys):
    assert main(["bisect-run"]) == 128  # no test named
    assert main(["bisect-run", "--tree", str(tmp_path), "--results", str(tmp_path / "r"),
                 "tests/guest/test_map_basic.py"]) == 128
    assert "inside the kernel tree" in capsys.readouterr().err
