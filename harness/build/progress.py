"""Live progress of the long steps (build root, kernel build), with no terminal code in it.

A `LogMonitor` thread follows a log as the tool writes it, counts its step lines (kbuild's
`  CC      kernel/fork.o`, apt's `Unpacking ...`) and reports a `StepProgress` to a callback
twice a second; the expected count comes from the previous run of the same step. How progress is
shown is the caller's business: the CLI draws a bar on a terminal, and `periodic_lines` turns the
reports into one plain line every ~15 s for logs, CI and the pytest plugin.
"""
from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Callable

# kbuild's quiet output: two spaces, an upper-case tag (`CC`, `RUSTC L`, `LD`, `AR`, `HOSTCC`,
# `BINDGEN`, ...) padded with spaces, then the target. Compiler diagnostics never look like it.
KBUILD_STEP = re.compile(rb"  [A-Z][A-Z0-9_]*(?: [A-Z])? +\S")
# apt's and dpkg's lines in mmdebstrap --verbose: downloads, unpacks, configures.
BOOTSTRAP_STEP = re.compile(rb"Get:\d|Unpacking |Setting up ")


@dataclass(frozen=True)
class StepProgress:
    """Where a long step stands. `expected` is None when nothing is known about its size."""

    phase: str
    done: int
    expected: int | None
    elapsed: float
    finished: bool = False

    @property
    def total(self) -> int | None:
        """The expected count while it still holds; None once the step outgrew it."""
        return self.expected if self.expected and self.done <= self.expected else None

    @property
    def fraction(self) -> float | None:
        return None if self.total is None else self.done / self.total

    @property
    def eta(self) -> float | None:
        """Seconds left at the average rate so far (None until a few steps are done)."""
        if self.total is None or self.done < 5 or self.finished:
            return None
        return self.elapsed / self.done * (self.total - self.done)

    def describe(self) -> str:
        """`kernel build: 412/2100 steps (20%), 1:10 elapsed, about 4:36 left`."""
        if self.finished:
            return f"{self.phase}: {self.done} steps in {clock(self.elapsed)}"
        fraction = self.fraction
        count = f"{self.done} steps" if fraction is None else \
            f"{self.done}/{self.total} steps ({fraction:.0%})"
        text = f"{self.phase}: {count}, {clock(self.elapsed)} elapsed"
        return text + (f", about {clock(self.eta)} left" if self.eta is not None else "")


OnSteps = Callable[[StepProgress], None]


def clock(seconds: float) -> str:
    """`75.2` -> `1:15`; `3725` -> `1:02:05`."""
    whole = int(seconds + 0.5)
    hours, rest = divmod(whole, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


class StepCounter:
    """Counts step lines in a byte stream fed in arbitrary chunks (lines may be split)."""

    def __init__(self, pattern: re.Pattern[bytes]) -> None:
        self.pattern = pattern
        self.count = 0
        self._partial = b""

    def feed(self, chunk: bytes) -> int:
        lines = (self._partial + chunk).split(b"\n")
        self._partial = lines.pop()
        self.count += sum(1 for line in lines if self.pattern.match(line))
        return self.count

    def flush(self) -> int:
        """The stream ended: a last line without a newline counts too."""
        if self._partial and self.pattern.match(self._partial):
            self.count += 1
        self._partial = b""
        return self.count


class LogMonitor:
    """`with LogMonitor(log, KBUILD_STEP, "kernel build", expected, report): make ...`.

    Reads only what was appended since the last look, so a long log costs nothing; the last
    report (after the block) has `finished=True` and the final count, also in `.count`."""

    def __init__(self, log: Path, pattern: re.Pattern[bytes], phase: str, expected: int | None,
                 report: OnSteps, interval: float = 0.5) -> None:
        self.log, self.phase, self.expected = log, phase, expected
        self.report, self.interval = report, interval
        self._counter = StepCounter(pattern)
        self._offset = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"progress {phase}", daemon=True)
        self._started = 0.0

    @property
    def count(self) -> int:
        return self._counter.count

    def __enter__(self) -> "LogMonitor":
        self._started = time.monotonic()
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._stop.set()
        self._thread.join()
        self._read()
        self._counter.flush()
        if kind is None:
            self._report(finished=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._read()
            self._report()

    def _read(self) -> None:
        try:
            with open(self.log, "rb") as f:
                f.seek(self._offset)
                chunk = f.read()
        except OSError:
            return  # not created yet
        self._offset += len(chunk)
        self._counter.feed(chunk)

    def _report(self, finished: bool = False) -> None:
        self.report(StepProgress(self.phase, self.count, self.expected,
                                 time.monotonic() - self._started, finished))


def periodic_lines(progress: Callable[[str], None], every: float = 15.0,
                   now: Callable[[], float] = time.monotonic) -> OnSteps:
    """A callback that prints one progress line per `every` seconds of each step, and its end."""
    last: dict[str, float] = {}

    def report(p: StepProgress) -> None:
        t = now()
        if p.finished or t - last.setdefault(p.phase, t) >= every:
            last[p.phase] = t
            progress(p.describe())

    return report
