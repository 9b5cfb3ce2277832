"""`iopt-hil verify`: does a patch (or the commits on a branch) regress the io_pgtable suite?

Base and head are built in the private worktree (one build directory, so head is an
incremental rebuild of base) and the suite runs on both; the verdict is per test.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

from ..build.cachedir import cache_root
from ..results.comparison import Change, compare, regressions, tally
from ..errors import GitError, HarnessError
from ..build.git import resolve, uncommitted_diff
from ..results.reports import CaseResult, counts, failure_excerpt, mailing_list_line
from .options import SuiteOptions
from .suite_run import Evaluation, evaluate
from ..build.worktree import PrivateWorktree, Revision, patch_files

Progress = Callable[[str], None]


@dataclass(frozen=True)
class VerifyRequest:
    tree: Path
    base: str | None = None  # default: HEAD with --patch, else the branch's upstream
    patches: Path | None = None  # an mbox/patch file or a directory of them
    each: bool = False  # every commit of the series must build, boot and pass
    results: Path = Path("results/verify")
    options: SuiteOptions = SuiteOptions()


@dataclass
class SeriesStep:
    evaluation: Evaluation
    changes: list[Change]

    @property
    def ok(self) -> bool:
        return self.evaluation.ran and not regressions(self.changes)


@dataclass
class VerifyReport:
    tree: Path
    base: Evaluation
    head: Evaluation
    changes: list[Change]
    series: list[SeriesStep] = field(default_factory=list)  # only with --each
    patches: list[str] = field(default_factory=list)  # subjects of what git am applied

    @property
    def regressed(self) -> bool:
        if not self.head.ran or regressions(self.changes):
            return True  # a head whose suite did not run at all is not a pass
        return any(not step.ok for step in self.series)


class VerifyError(HarnessError):
    """Verification could not be carried out (e.g. the base does not build)."""


def _base(request: VerifyRequest) -> str:
    if request.base:
        return resolve(request.tree, request.base)
    if request.patches:
        return resolve(request.tree, "HEAD")
    try:
        return resolve(request.tree, "@{upstream}")
    except GitError:
        raise VerifyError("no --base given and the current branch has no upstream: say what "
                          "to compare against, e.g. --base origin/master or --base HEAD~3") from None


def verify(request: VerifyRequest, progress: Progress = print) -> VerifyReport:
    cache = request.options.cache or cache_root()
    wt = PrivateWorktree(request.tree, cache)
    results = request.results.resolve()
    results.mkdir(parents=True, exist_ok=True)
    with wt.session():
        base_commit = _base(request)
        if request.patches:
            patches = patch_files(request.patches)
            wt.checkout(base_commit)
            commits = wt.apply_series(patches)
            subjects = [wt.subject(c) for c in commits]
            if uncommitted_diff(request.tree):
                progress(f"note: uncommitted changes in {request.tree} are not part of the "
                         "verified tree (patches go on a commit)")
            progress(f"applied {len(patches)} patch file(s) on {base_commit[:12]}: "
                     f"{len(commits)} commit(s)")
        else:
            subjects = []
            head_commit = wt.user_head()
            commits = wt.commits_between(base_commit, head_commit)
        if not commits:
            raise VerifyError(f"nothing to verify: head has no commits over base {base_commit[:12]}")
        opts = replace(request.options, cache=cache)
        base = evaluate(wt, Revision(base_commit, "base"), opts, results / "base", progress)
        if not base.built:
            raise VerifyError(f"the base {base_commit[:12]} does not build, so there is nothing "
                              f"to compare against:\n{base.build_error}")
        if not base.ran:
            raise VerifyError(f"the suite did not run on the base (pytest exit status "
                              f"{base.pytest_status}, {len(base.cases)} tests; is the test "
                              f"selection right?): see {base.results / 'run.log'}")
        series: list[SeriesStep] = []
        if request.each:
            for i, commit in enumerate(commits, 1):
                label = f"{i}/{len(commits)}"
                rev = Revision(commit, f"{label} {wt.subject(commit)}")
                ev = evaluate(wt, rev, opts, results / f"commit-{i:02d}-{commit[:12]}", progress)
                series.append(SeriesStep(ev, compare(base.cases, ev.cases)))
            head = series[-1].evaluation
        else:
            head = evaluate(wt, Revision(commits[-1], "head"), opts, results / "head", progress)
    report = VerifyReport(request.tree, base, head, compare(base.cases, head.cases), series,
                          subjects)
    (results / "verify.md").write_text(markdown(report))
    (results / "verify.json").write_text(json.dumps(as_json(report), indent=1) + "\n")
    return report


def _side(ev: Evaluation) -> str:
    if not ev.built:
        return "does not build"
    c = counts(ev.cases)
    return (f"{c['passed']} passed, {c['failed'] + c['error']} failed, {c['skipped']} skipped "
            f"(pytest exit status {ev.pytest_status})")


def markdown(report: VerifyReport, excerpt_lines: int = 30, detailed: int | None = None) -> str:
    """The verify report; `detailed`: how many regressions get their full excerpt (all: None)."""
    lines = [f"# iopt-hil verify: {report.tree}", "",
             f"- base `{report.base.revision.short}`: {_side(report.base)}",
             f"- head `{report.head.revision.short}`: {_side(report.head)}", ""]
    lines.append("**REGRESSION: the patch breaks the io_pgtable suite.**" if report.regressed
                 else "**No regression.**")
    lines += ["", "| verdict | tests |", "| --- | --- |"]
    lines += [f"| {k} | {n} |" for k, n in tally(report.changes).items()]
    lines.append("")
    if not report.head.built:
        lines += ["## Head does not build", "", "```", report.head.build_error[-4000:], "```", ""]
    elif not report.head.ran:
        lines += ["## The suite did not run on head", "",
                  f"pytest exit status {report.head.pytest_status}; see "
                  f"`{report.head.results / 'run.log'}`", ""]
    if report.series:
        lines += ["## Each commit", "", "| # | commit | builds | tests | regressions |",
                  "| --- | --- | --- | --- | --- |"]
        for step in report.series:
            ev = step.evaluation
            lines.append(f"| {ev.revision.label} | `{ev.revision.short}` | "
                         f"{'yes' if ev.built else 'NO'} | {_side(ev)} | "
                         f"{len(regressions(step.changes)) if ev.built else '-'} |")
        lines.append("")
    regressed = regressions(report.changes)
    for change in regressed[:detailed]:
        case = CaseResult(change.name, change.head or "", 0.0, "", change.detail)
        lines += [f"## {change.verdict.upper()}: `{change.name}`", "",
                  f"base: {change.base or 'absent'} -> head: {change.head}", ""]
        lines += failure_excerpt(case, excerpt_lines)
    if detailed is not None and len(regressed) > detailed:
        lines += [f"... and {len(regressed) - detailed} more regressed:", ""]
        lines += [f"- `{c.name}`" for c in regressed[detailed:]] + [""]
    for change in report.changes:
        if change.verdict in ("fixed", "still failing", "removed", "now skipped"):
            lines.append(f"- {change.verdict}: `{change.name}`")
    head_counts = counts(report.head.cases)
    if not report.regressed and head_counts["failed"] + head_counts["error"] == 0:
        props = dict(report.head.props)
        if report.patches:  # the head's commit id exists only in the private clone
            props["tree"] = f"{report.base.props.get('tree', '?')} + {len(report.patches)} patch(es)"
        lines += ["", "For the patch mail:", "", "    " + mailing_list_line(report.head.cases, props)]
    return "\n".join(lines) + "\n"


def _ev_json(ev: Evaluation) -> dict[str, Any]:
    return {"commit": ev.revision.commit, "label": ev.revision.label, "built": ev.built,
            "build_error": ev.build_error[-4000:], "pytest_status": ev.pytest_status,
            "counts": counts(ev.cases), "results": str(ev.results)}


def as_json(report: VerifyReport) -> dict[str, Any]:
    return {"tree": str(report.tree), "regressed": report.regressed,
            "base": _ev_json(report.base), "head": _ev_json(report.head),
            "patches": report.patches, "tally": tally(report.changes),
            "changes": [{"name": c.name, "base": c.base, "head": c.head, "verdict": c.verdict}
                        for c in report.changes],
            "series": [dict(_ev_json(s.evaluation), ok=s.ok,
                            regressions=[c.name for c in regressions(s.changes)])
                       for s in report.series]}
