"""Where a run's time goes: named phases with their wall-clock start and length.

Build, boot and the suite run in one process (`iopt-hil run`), so one process-wide timeline
collects them all; the CLI writes it to `results/timings.json`. The edit-loop benchmark reads that
file, and so can anyone asking why a run took as long as it did.
"""
from __future__ import annotations

import json
import threading
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator


@dataclass(frozen=True)
class Phase:
    name: str  # e.g. "build: kernel make", "boot: qemu to ssh", "suite: test_matrix.py"
    start: float  # time.time() at its start
    seconds: float
    count: int = 0  # how many things it covers (e.g. tests in a file), 0 when not counted
    cpu: float = 0.0  # host CPU seconds the guests' QEMUs spent in it (0: not measured)
    host_cpu: float = 0.0  # CPU seconds of the harness process itself in it (0: not measured)


class Timeline:
    def __init__(self) -> None:
        self._phases: list[Phase] = []
        self._lock = threading.Lock()

    def add(self, name: str, start: float, seconds: float, count: int = 0, cpu: float = 0.0,
            host_cpu: float = 0.0) -> None:
        with self._lock:
            self._phases.append(Phase(name, start, seconds, count, cpu, host_cpu))

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Times the block, also when it raises (a failed step's cost is still spent)."""
        wall, started = time.time(), time.monotonic()
        try:
            yield
        finally:
            self.add(name, wall, time.monotonic() - started)

    def phases(self) -> list[Phase]:
        with self._lock:
            return list(self._phases)

    def clear(self) -> None:
        with self._lock:
            self._phases.clear()

    def write(self, path: Path) -> None:
        path.write_text(json.dumps([asdict(p) for p in self.phases()], indent=1) + "\n")


def read(path: Path) -> list[Phase]:
    return [Phase(**p) for p in json.loads(path.read_text())]


TIMELINE = Timeline()
