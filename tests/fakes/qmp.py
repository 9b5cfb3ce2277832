"""A fake QMP channel over `FakeMemory`: the calls the harness makes on `QmpChannel`
(`program_counters`, `paused`, `status`, `pmemsave`, `hostfwd_port`, `quit`, `close`).

Program counters come from a script: `pcs(sample)` returns one PC per vCPU for the n-th call,
and `on_sample(sample)` runs after each call (e.g. to print on the console while sampling).
"""
from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from harness.errors import ChannelError
from harness.guest.guestmem import FakeMemory

IDLE_PC = 0xffff_8000_8001_2340  # cpu_do_idle's wfi
SPIN_PC = 0xffff_8000_8090_0100  # a loop with interrupts off


def stuck(sample: int) -> list[int]:
    """Two vCPUs: one spinning over a few instructions, one in its idle loop."""
    return [SPIN_PC + 4 * (sample % 3), IDLE_PC]


class FakeQmp:
    def __init__(self, memory: FakeMemory, port: int = 2222,
                 pcs: Callable[[int], list[int]] = stuck,
                 on_quit: Callable[[], None] = lambda: None) -> None:
        self.memory, self.port, self.pcs, self.on_quit = memory, port, pcs, on_quit
        self.on_sample: Callable[[int], None] = lambda sample: None
        self.samples = 0
        self.running = True
        self.pauses = 0
        self.closed = False
        self.fail = False  # every call raises ChannelError (QEMU gone)

    def _check(self, name: str) -> None:
        if self.fail or self.closed:
            raise ChannelError(f"QMP {name} failed: fake QMP is down")

    def hostfwd_port(self, guest_port: int = 22) -> int:
        self._check("human-monitor-command")
        if guest_port != 22:
            raise ChannelError(f"no host forward to guest port {guest_port}")
        return self.port

    def program_counters(self) -> list[int]:
        self._check("human-monitor-command")
        pcs = self.pcs(self.samples)
        self.on_sample(self.samples)
        self.samples += 1
        return pcs

    def status(self) -> str:
        self._check("query-status")
        return "running" if self.running else "paused"

    @contextmanager
    def paused(self) -> Iterator[None]:
        was_running = self.status() == "running"
        self.running = False
        self.pauses += 1
        try:
            yield
        finally:
            self.running = was_running

    def pmemsave(self, addr: int, size: int, path: Path) -> bytes:
        self._check("pmemsave")
        data = self.memory.read(addr, size)
        path.write_bytes(data)
        try:
            return path.read_bytes()
        finally:
            path.unlink(missing_ok=True)

    def quit(self) -> None:
        if not self.closed:
            self.on_quit()

    def close(self) -> None:
        self.closed = True
