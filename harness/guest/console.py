"""The serial console: a reader thread turning QEMU's stdout into timestamped lines and a log."""
from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

MAX_LINE = 16 << 10  # bytes of one console line kept (the kernel's own lines are < 1 KiB)
MAX_LINES = 1 << 20  # lines kept in memory for a guest's lifetime
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
        """Lines are bounded (MAX_LINE bytes: a longer one is cut, the rest dropped up to its
        newline) and so is their number (MAX_LINES kept; the log gets every line)."""
        cut = False
        for raw in iter(lambda: self._stream.readline(MAX_LINE), b""):
            whole = raw.endswith(b"\n")
            if cut:  # the rest of an over-long line
                cut = not whole
                continue
            text = raw.decode(errors="replace").rstrip("\r\n")
            if not whole and len(raw) >= MAX_LINE:
                text += " [line cut by iopt-hil]"
                cut = True
            with self._cond:
                if len(self._lines) >= MAX_LINES:
                    self._log.write(text + "\n")
                    continue
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
