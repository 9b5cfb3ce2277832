"""A small KTAP parser for KUnit results printed on the console.

Accepted format (KTAP v1, 4 spaces of indentation per nesting level; printk prefixes allowed):

    KTAP version 1
    1..1
        KTAP version 1
        # Subtest: io-pgtable-arm-test
        1..2
        ok 1 arm_lpae_do_selftests
        not ok 2 other_case # SKIP needs hardware
    ok 1 io-pgtable-arm-test

Results nest: a result line at depth d takes the results seen at depth d+1 since the previous
result at depth d as its children. Output cut short (a crash) leaves `complete` False.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Iterable

_PRINTK = re.compile(r"^\[\s*\d+\.\d+\] ?(?:\[\s*[TC]\d+\] ?)?")
_RESULT = re.compile(r"^(ok|not ok) (\d+)(?: (?:- )?([^#]*?))?\s*(?:# (\w+)\s*(.*))?$")
_PLAN = re.compile(r"^1\.\.(\d+)")
_SUBTEST = re.compile(r"^# Subtest: (.+)$")
_VERSION = re.compile(r"^K?TAP version \d+")


@dataclass
class KtapResult:
    name: str
    ok: bool
    number: int
    directive: str = ""  # "SKIP", "TODO", ...
    reason: str = ""
    children: list["KtapResult"] = field(default_factory=list)
    diagnostics: list[str] = field(default_factory=list)

    @property
    def status(self) -> str:
        if self.directive.upper() == "SKIP":
            return "skipped"
        return "passed" if self.ok else "failed"

    def leaves(self, prefix: str = "") -> list[tuple[str, "KtapResult"]]:
        """(suite/case/param path, result) for every innermost result."""
        path = f"{prefix}/{self.name}" if prefix else self.name
        if not self.children:
            return [(path, self)]
        return [leaf for child in self.children for leaf in child.leaves(path)]


@dataclass
class KtapDocument:
    results: list[KtapResult]
    planned: int | None
    complete: bool
    orphans: list[KtapResult] = field(default_factory=list)  # results of a suite never closed


def strip_printk(line: str) -> str:
    return _PRINTK.sub("", line, count=1).rstrip()


def parse(lines: Iterable[str]) -> KtapDocument:
    pending: dict[int, list[KtapResult]] = {}
    diags: dict[int, list[str]] = {}
    plans: dict[int, int] = {}
    started = False
    for raw in lines:
        line = strip_printk(raw)
        body = line.lstrip(" ")
        depth = (len(line) - len(body)) // 4
        if _VERSION.match(body):
            started = True
            continue
        if not started:
            continue
        if m := _PLAN.match(body):
            plans[depth] = int(m.group(1))
        elif m := _RESULT.match(body):
            result = KtapResult(name=(m.group(3) or "").strip(), ok=m.group(1) == "ok",
                                number=int(m.group(2)), directive=m.group(4) or "",
                                reason=(m.group(5) or "").strip(),
                                children=pending.pop(depth + 1, []),
                                diagnostics=diags.pop(depth + 1, []) + diags.pop(depth, []))
            pending.setdefault(depth, []).append(result)
        elif body.startswith("#") and not _SUBTEST.match(body):
            diags.setdefault(depth, []).append(body[1:].strip())
    top = pending.get(0, [])
    planned = plans.get(0)
    complete = planned is not None and len(top) == planned and not any(
        d > 0 and v for d, v in pending.items())
    orphans = [r for d in sorted(pending) if d > 0 for r in pending[d]]
    return KtapDocument(top, planned, complete, orphans)
