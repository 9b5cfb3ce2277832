"""The serial console: a reader thread turning QEMU's stdout into timestamped lines and a log."""
from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

PANIC = re.compile(r"Kernel panic - not syncing|Unable to handle kernel|Internal error: Oops")


@dataclass(frozen=True)
class ConsoleLine:
    index: int
    host_time: float  # time.monotonic() when read
    text: str


class Console:
    """Collects lines; `mark()` then `since(mark)` gives what one test printed."""

    def __init__(self, stream: IO[bytes], log_path: Path) -> None:
        self._stream = stream
        self._lines: list[ConsoleLine] = []
        self._cond = threading.Condition()
        self._closed = False
        self.log_path = log_path
        self._log = open(log_path, "w", buffering=1, errors="replace")
        self._started = time.monotonic()
        self._thread = threading.Thread(target=self._pump, name="console", daemon=True)
        self._thread.start()

    def _pump(self) -> None:
        for raw in iter(self._stream.readline, b""):
            text = raw.decode(errors="replace").rstrip("\r\n")
            with self._cond:
                line = ConsoleLine(len(self._lines), time.monotonic(), text)
                self._lines.append(line)
                self._log.write(f"[{line.host_time - self._started:9.3f}] {text}\n")
                self._cond.notify_all()
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._log.close()

    @property
    def closed(self) -> bool:
        return self._closed

    def mark(self) -> int:
        with self._cond:
            return len(self._lines)

    def since(self, mark: int) -> list[ConsoleLine]:
        with self._cond:
            return self._lines[mark:]

    def last_output(self) -> float:
        with self._cond:
            return self._lines[-1].host_time if self._lines else self._started

    def tail(self, count: int = 40) -> str:
        with self._cond:
            return "\n".join(line.text for line in self._lines[-count:])

    def wait_for(self, pattern: re.Pattern[str], timeout: float, start: int = 0,
                 abort: re.Pattern[str] | None = None) -> ConsoleLine | None:
        """First line from `start` matching `pattern` (or `abort`); None on timeout or EOF."""
        deadline = time.monotonic() + timeout
        seen = start
        with self._cond:
            while True:
                for line in self._lines[seen:]:
                    if pattern.search(line.text) or (abort and abort.search(line.text)):
                        return line
                seen = len(self._lines)
                left = deadline - time.monotonic()
                if self._closed or left <= 0:
                    return None
                self._cond.wait(min(left, 0.5))

    def join(self, timeout: float = 5.0) -> None:
        self._thread.join(timeout)
