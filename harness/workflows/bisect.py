"""`iopt-hil bisect-run`: one step of `git bisect run`, limited to named tests.

Exit status is git bisect's: 0 good, 1 bad, 125 skip (this commit cannot be tested, e.g. a
build failure outside the code under test), 128 abort (the harness itself cannot go on).
The commit git bisect checked out is built in the private worktree `verify` uses, so
bisect steps are incremental rebuilds and the user's tree is only ever read.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

from ..build.cachedir import cache_root
from ..build.kbuild import module_sources
from ..resources import checkout
from .options import SuiteOptions
from .suite_run import build_revision, run_suite
from ..build.worktree import PrivateWorktree, Revision

GOOD, BAD, SKIP, ABORT = 0, 1, 125, 128
# The code under test: a build failure here is the bug being bisected, not noise.
UNDER_TEST = ("rust/kernel/iommu/", "drivers/iommu/io-pgtable", "include/linux/io-pgtable")
_C_ERROR = re.compile(r"^(?P<path>[^\s:][^:]*):\d+:\d+: (?:fatal )?error:", re.M)
_RUST_LEVEL = re.compile(r"^(error|warning)(\[\w+\])?:")
_RUST_AT = re.compile(r"^\s*--> (?P<path>[^:]+):\d+:\d+")
Progress = Callable[[str], None]


@dataclass(frozen=True)
class StepResult:
    status: int
    reason: str


def error_paths(log: str) -> list[str]:
    """Files that compiler errors (clang or rustc) point at, in order, without duplicates."""
    found = [m.group("path") for m in _C_ERROR.finditer(log)]
    level = ""
    for line in log.splitlines():
        if m := _RUST_LEVEL.match(line):
            level = m.group(1)
        elif (m := _RUST_AT.match(line)) and level == "error":
            found.append(m.group("path"))
            level = ""  # only the primary location of each error
    return list(dict.fromkeys(found))


def in_module(path: str) -> bool:
    """Our test module's sources: rustc names them bare (`request.rs`) when kbuild builds M=."""
    names = {src.name for src in module_sources()}
    head, _, name = path.rpartition("/")
    return name in names and (not head or head.endswith("/module"))


def classify_build_failure(log: str, policy: str = "auto",
                           under_test: tuple[str, ...] = UNDER_TEST) -> StepResult:
    """auto: bad if an error points into the code under test, else skip; or always skip/bad."""
    if policy in ("skip", "bad"):
        return StepResult(SKIP if policy == "skip" else BAD, f"build failed (--build-failure {policy})")
    paths = error_paths(log)
    hits = [p for p in paths if any(marker in p for marker in under_test) or in_module(p)]
    if hits:
        return StepResult(BAD, f"build fails in the code under test: {', '.join(hits[:5])}")
    where = ", ".join(paths[:5]) or "no compiler error location (link or config step)"
    return StepResult(SKIP, f"build fails outside the code under test ({where}): skip")


def test_args(tests: list[str]) -> list[str]:
    """Test ids are relative to the harness checkout (git bisect runs us in the kernel tree)."""
    base = checkout() or Path.cwd()
    out = []
    for test in tests:
        path = test.split("::", 1)[0]
        if not (base / path).exists():
            raise FileNotFoundError(f"{path}: no such test file under {base}")
        out.append(str(base / test))
    return out


def bisect_step(tree: Path, tests: list[str], options: SuiteOptions, results: Path,
                policy: str = "auto", progress: Progress = print) -> StepResult:
    cache = options.cache or cache_root()
    opts = replace(options, cache=cache, pytest_args=tuple(test_args(tests)) + options.pytest_args)
    wt = PrivateWorktree(tree, cache)
    with wt.session():
        commit = wt.user_head()
        rev = Revision(commit, "bisect")
        out = results.resolve() / f"bisect-{rev.short}"
        ev, build = build_revision(wt, rev, opts, out, progress)
        if build is None:
            log = ev.build_log.read_text(errors="replace") if ev.build_log and ev.build_log.exists() else ""
            return classify_build_failure(log or ev.build_error, policy)
        run_suite(wt, ev, opts, progress)
    if ev.pytest_status == 0:
        return StepResult(GOOD, f"{rev.short}: the named tests pass")
    bad = [c.name for c in ev.cases if c.outcome in ("failed", "error")]
    if ev.pytest_status == 1 and bad:  # only a named test that failed makes a commit bad
        return StepResult(BAD, f"{rev.short}: {len(bad)} failed: {', '.join(bad[:5])}")
    return StepResult(ABORT, f"{rev.short}: pytest exit status {ev.pytest_status} and no failed "
                      f"test (nothing collected, usage error, crash or interrupt; see "
                      f"{out / 'run.log'})")
