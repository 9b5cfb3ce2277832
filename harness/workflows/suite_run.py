"""Build one revision of the private worktree and run the guest suite on it, in a child
`iopt-hil run` so that each revision gets a fresh pytest session and its own results directory.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ..errors import BuildError, ConfigError, TreeError
from ..build.kbuild import KernelBuild
from ..build.pipeline import BuildRequest, prepare
from ..build.toolchain import die_with_parent
from ..build.worktree import PrivateWorktree, Revision
from ..resources import checkout
from ..results.reports import CaseResult, counts, read_junit
from .options import SuiteOptions, run_argv

Progress = Callable[[str], None]


@dataclass
class Evaluation:
    """One revision: built (or why not) and, if built, the suite's outcome per test."""

    revision: Revision
    results: Path
    build_error: str = ""
    build_log: Path | None = None
    pytest_status: int | None = None
    cases: list[CaseResult] = field(default_factory=list)
    props: dict[str, str] = field(default_factory=dict)

    @property
    def built(self) -> bool:
        return not self.build_error

    @property
    def ran(self) -> bool:
        """The suite ran to completion (tests passed or failed), not a usage error or crash."""
        return self.built and self.pytest_status in (0, 1) and bool(self.cases)



def build_revision(wt: PrivateWorktree, rev: Revision, options: SuiteOptions, out: Path,
                   progress: Progress) -> tuple[Evaluation, KernelBuild | None]:
    """Check out and build; a build, config or tree failure is a result, not an exception."""
    if out.exists():
        shutil.rmtree(out)  # never judge a revision by an earlier run's junit.xml
    out.mkdir(parents=True)
    wt.checkout(rev.commit)
    progress(f"{rev.label}: {rev.short} -- building")
    request = BuildRequest(tree=wt.path, toolchain=options.toolchain, fragments=options.fragments,
                           cache=options.cache)
    try:
        build = prepare(request, progress).build
    except (BuildError, ConfigError, TreeError) as exc:
        log = Path(exc.log) if isinstance(exc, BuildError) and exc.log else None
        if log is not None and log.exists():
            shutil.copyfile(log, out / "build.log")
        progress(f"{rev.label}: {rev.short} does not build: {str(exc).splitlines()[0]}")
        return Evaluation(rev, out, build_error=str(exc),
                          build_log=out / "build.log" if log else None), None
    return Evaluation(rev, out, build_log=out / "build.log"), build


@dataclass
class SuiteOutcome:
    status: int
    cases: list[CaseResult]
    props: dict[str, str]


def run_child_suite(tree: Path, options: SuiteOptions, results: Path) -> SuiteOutcome:
    """A child `iopt-hil run` on an already built tree; its output goes to results/run.log and
    its verdict is read back from the JUnit file it writes (never from its terminal output)."""
    results.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, **({"IOPT_HIL_CACHE": str(options.cache)} if options.cache else {}))
    with open(results / "run.log", "w") as logf:
        status = subprocess.call(run_argv(tree, options, results), cwd=checkout() or Path.cwd(),
                                 env=env, stdout=logf, stderr=subprocess.STDOUT,
                                 preexec_fn=die_with_parent)  # a killed verify takes it along
    junit = results / "junit.xml"
    cases, props = read_junit(junit) if junit.exists() else ([], {})
    return SuiteOutcome(status, cases, props)


def run_suite(wt: PrivateWorktree, ev: Evaluation, options: SuiteOptions,
              progress: Progress) -> Evaluation:
    """`iopt-hil run` on the checked-out (already built) worktree."""
    progress(f"{ev.revision.label}: {ev.revision.short} -- running the suite "
             f"(log: {ev.results / 'run.log'})")
    outcome = run_child_suite(wt.path, options, ev.results)
    ev.pytest_status, ev.cases, ev.props = outcome.status, outcome.cases, outcome.props
    c = counts(ev.cases)
    progress(f"{ev.revision.label}: {ev.revision.short} -- {c['passed']} passed, "
             f"{c['failed'] + c['error']} failed "
             f"(pytest exit status {ev.pytest_status})")
    return ev


def evaluate(wt: PrivateWorktree, rev: Revision, options: SuiteOptions, out: Path,
             progress: Progress) -> Evaluation:
    ev, build = build_revision(wt, rev, options, out, progress)
    if build is None:
        return ev
    return run_suite(wt, ev, options, progress)
