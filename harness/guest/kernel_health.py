"""Per-test kernel health: which splats a test caused, which it declared, what is left over.

Not pytest-aware: the plugin creates one `TestWatch` per guest test and turns `problems()` into
a failure.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator

from .machine import Machine
from .splats import Splat, classify, matches


class ExpectationError(AssertionError):
    """An expected splat did not come, or came too often."""


@dataclass
class TestWatch:
    machine: Machine
    start: int  # console line index at the start of the test
    expected: set[int] = field(default_factory=set)  # absolute indexes of declared splats

    def splats(self, since: int | None = None) -> list[tuple[int, Splat]]:
        """(absolute index, splat) for everything printed since `since` (default: the test's start)."""
        assert self.machine.console is not None
        first = self.start if since is None else since
        lines = [line.text for line in self.machine.console.since(first)]
        return [(first + s.start, s) for s in classify(lines)]

    @contextmanager
    def expect(self, kind: str, match: str | None = None, count: int = 1) -> Iterator[None]:
        """The block must cause exactly `count` splats of `kind` whose text matches `match`."""
        assert self.machine.console is not None
        since = self.machine.console.mark()
        yield
        self.machine.barrier()
        self.check_expected(kind, match, count, since)

    def check_expected(self, kind: str, match: str | None, count: int, since: int | None = None) -> None:
        found = self.splats(since)
        hits = [(i, s) for i, s in found if matches(s, kind, match)]
        if len(hits) != count:
            seen = "\n\n".join(s.text for _, s in found) or "(no splat at all)"
            raise ExpectationError(f"expected {count} {kind} splat(s) matching {match!r}, "
                                   f"saw {len(hits)}; everything seen:\n{seen}")
        self.expected.update(i for i, _ in hits)

    def unexpected(self) -> list[Splat]:
        self.machine.barrier()
        return [s for i, s in self.splats() if i not in self.expected]
