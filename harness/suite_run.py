"""Build one revision of the private worktree and run the guest suite on it, in a child
`iopt-hil run` so that each revision gets a fresh pytest session and its own results directory.
"""
from __future__ import annotations

import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from .errors import BuildError, ConfigError, TreeError
from .kbuild import KernelBuild
from .pipeline import BuildRequest, prepare
from .reports import CaseResult, counts, read_junit
from .worktree import PrivateWorktree, Revision

REPO = Path(__file__).resolve().parent.parent
Progress = Callable[[str], None]


@dataclass(frozen=True)
class SuiteOptions:
    toolchain: str = "buildroot"
    fragments: tuple[str, ...] = ()
    pytest_args: tuple[str, ...] = ()  # e.g. test node ids, -k, -n 2
    cache: Path | None = None


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


def run_suite(wt: PrivateWorktree, ev: Evaluation, options: SuiteOptions,
              progress: Progress) -> Evaluation:
    """`iopt-hil run` on the checked-out (already built) worktree; output goes to run.log."""
    argv = [sys.executable, "-m", "harness", "run", "--tree", str(wt.path), "--results",
            str(ev.results), "--toolchain", options.toolchain]
    for frag in options.fragments:
        argv += ["--kconfig", frag]
    argv += list(options.pytest_args)
    progress(f"{ev.revision.label}: {ev.revision.short} -- running the suite "
             f"(log: {ev.results / 'run.log'})")
    with open(ev.results / "run.log", "w") as logf:
        ev.pytest_status = subprocess.call(argv, cwd=REPO, stdout=logf, stderr=subprocess.STDOUT)
    junit = ev.results / "junit.xml"
    if junit.exists():
        ev.cases, ev.props = read_junit(junit)
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
