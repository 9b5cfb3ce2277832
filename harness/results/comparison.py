"""Per-test comparison of two runs (base vs head): fixed, regressed, still failing, unchanged.

Pure: works on the `CaseResult`s read back from each side's JUnit file.
"""
from __future__ import annotations

from dataclasses import dataclass

from .reports import CaseResult

BAD = ("failed", "error")
# verdict -> does it count against the patch?
VERDICTS = {"regressed": True, "new failure": True, "fixed": False, "still failing": False,
            "unchanged": False, "new": False, "removed": False, "now skipped": False,
            "no longer skipped": False}


@dataclass(frozen=True)
class Change:
    name: str
    base: str | None  # outcome on base, None if the test did not exist there
    head: str | None
    verdict: str
    detail: str = ""  # head's failure text for regressions

    @property
    def is_regression(self) -> bool:
        return VERDICTS[self.verdict]


def verdict(base: str | None, head: str | None) -> str:
    if base is None:
        return "new failure" if head in BAD else "new"
    if head is None:
        return "removed"
    if base in BAD:
        return "still failing" if head in BAD else "fixed"
    if head in BAD:
        return "regressed"  # passed or skipped before, fails now
    if base != head:
        return "now skipped" if head == "skipped" else "no longer skipped"
    return "unchanged"


def compare(base: list[CaseResult], head: list[CaseResult]) -> list[Change]:
    """One Change per test name seen on either side, in head's order (then removed ones)."""
    before = {c.name: c for c in base}
    after = {c.name: c for c in head}
    changes = []
    for name, case in after.items():
        old = before.get(name)
        v = verdict(old.outcome if old else None, case.outcome)
        changes.append(Change(name, old.outcome if old else None, case.outcome, v,
                              (case.text or case.message) if VERDICTS[v] else ""))
    changes += [Change(name, case.outcome, None, "removed") for name, case in before.items()
                if name not in after]
    return changes


def tally(changes: list[Change]) -> dict[str, int]:
    out = {v: 0 for v in VERDICTS}
    for change in changes:
        out[change.verdict] += 1
    return {k: n for k, n in out.items() if n}


def regressions(changes: list[Change]) -> list[Change]:
    return [c for c in changes if c.is_regression]
