"""A fake guest: the real `Machine` (readiness checks, hang detection, barrier, stop) wired to a
console fed from a golden log through a real pipe and `Console` reader thread, `FakeQmp` over
`FakeMemory`, `FakeSsh` to a `FakeModule`, and a fake QEMU process.

`FakeMachine(log_dir, boot_log=..., exit_code=...)`: the boot prints `boot_log` (default: the
clean 7.3 boot golden log); `exit_code` makes QEMU exit right after it. Once up, `crash()`
prints a panic, closes SSH and exits QEMU with status 0 (`panic=-1 -no-reboot`), and `hang()`
stalls the guest: shells stop answering, the console is quiet and the PCs stay put.
`FakeFactory` is a `MachineFactory` for `GuestManager` / `PreparedBuild`.
"""
from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Callable, Sequence

from harness.build.pipeline import Prepared
from harness.guest.console import Console
from harness.guest.guestmem import FakeMemory
from harness.guest.machine import Machine

from .module import FakeModule
from .qmp import FakeQmp, stuck
from .ssh import FakeSsh

GOLDEN = Path(__file__).resolve().parents[1] / "unit" / "golden"


def golden(name: str) -> list[str]:
    return (GOLDEN / name).read_text().splitlines()


CLEAN_BOOT = golden("boot-clean-7.3.log")
PANIC_LOG = golden("panic-rust-7.3.log")
FAKE_ARGV = ["qemu-system-aarch64", "-M", "virt,iommu=smmuv3", "(fake)"]


class FakeGuestMemory(FakeMemory):
    def close(self) -> None:
        pass


class ConsoleFeed:
    """The QEMU side of the serial console: a pipe whose read end a real `Console` pumps."""

    def __init__(self) -> None:
        r, w = os.pipe()
        self.reader: IO[bytes] = os.fdopen(r, "rb")
        self._writer: IO[bytes] | None = os.fdopen(w, "wb", buffering=0)
        self.written = 0
        self.console: Console | None = None

    def say(self, lines: Sequence[str]) -> None:
        """Print `lines` and wait until the console has read them (tests stay deterministic)."""
        if self._writer is None or not lines:
            return
        self._writer.write("".join(f"{ln}\n" for ln in lines).encode())
        self.written += len(lines)
        deadline = time.monotonic() + 5
        while self.console is not None and self.console.mark() < self.written:
            if time.monotonic() > deadline:
                raise AssertionError("the console reader did not see what the fake printed")
            time.sleep(0.001)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


class FakeProcess:
    """The part of `subprocess.Popen` a `Machine` uses."""

    def __init__(self, on_exit: Callable[[int], None]) -> None:
        self.returncode: int | None = None
        self.pid = -1
        self.signals: list[int] = []
        self._on_exit = on_exit

    def exit(self, code: int) -> None:
        if self.returncode is None:
            self.returncode = code
            self._on_exit(code)

    def poll(self) -> int | None:
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is None:
            raise subprocess.TimeoutExpired("qemu-system-aarch64 (fake)", timeout or 0)
        return self.returncode

    def send_signal(self, sig: int) -> None:
        self.signals.append(sig)
        self.exit(-sig)


@dataclass
class FakeIdentity:
    def describe(self) -> str:
        return "fake tree @ 0000000"


@dataclass
class FakeBuild:
    """What the plugin, the manager and the CLI read from a `KernelBuild`."""

    log: Path = Path("/dev/null")
    release: str = "7.3.4-fake"
    identity: FakeIdentity = field(default_factory=FakeIdentity)
    image: Path = Path("/nonexistent/Image")
    vmlinux: Path = Path("/nonexistent/vmlinux")

    def provenance(self) -> dict[str, str]:
        return {"tree": self.identity.describe(), "kernel_release": self.release,
                "fragments": "", "build_key": "fake", "build_id": "0" * 40}


def fake_prepared(log: Path = Path("/dev/null")) -> Prepared:
    return Prepared(root=None, build=FakeBuild(log=log))  # type: ignore[arg-type]


class FakeMachine(Machine):
    def __init__(self, log_dir: Path, *, boot_log: Sequence[str] = CLEAN_BOOT,
                 exit_code: int | None = None, boot_timeout: float = 2.0,
                 pcs: Callable[[int], list[int]] = stuck, hang_interval: float = 0.01) -> None:
        super().__init__(FakeBuild(), None, log_dir=log_dir,  # type: ignore[arg-type]
                         boot_timeout=boot_timeout, progress=lambda msg: None)
        self.boot_log, self.exit_code, self.hang_interval = list(boot_log), exit_code, hang_interval
        self.stalled = False
        self.stops = 0
        self.guest_memory = FakeGuestMemory()
        self.module = FakeModule(self.guest_memory)
        self.module.on_warn, self.module.on_panic, self.module.on_hang = (
            self.feed_lines, self.crash, self.hang)
        self.feed = ConsoleFeed()
        self.fake_qmp = FakeQmp(self.guest_memory, pcs=pcs, on_quit=lambda: self._exit(0))
        self.fake_ssh = FakeSsh(self)

    # What the real `_start` does before the readiness checks, with fakes.
    def _start(self) -> "FakeMachine":
        started = time.monotonic()
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.proc = FakeProcess(self._exited)  # type: ignore[assignment]
        self.console = Console(self.feed.reader, self.log_dir / "console.log")
        self.feed.console = self.console
        self.qmp, self.memory = self.fake_qmp, self.guest_memory  # type: ignore[assignment]
        self.feed.say(self.boot_log)
        if self.exit_code is not None:
            self._exit(self.exit_code)
        self._await_ready(started, FAKE_ARGV)
        return self

    def _open_ssh(self, port: int) -> Any:
        self.fake_ssh.port = port
        return self.fake_ssh

    def hang_evidence(self, samples: int = 8, interval: float | None = None, window: int = 256,
                      share: float = 0.75) -> str | None:
        """The real check, sampling faster (`raise_if_hung` takes no parameters)."""
        return super().hang_evidence(samples, self.hang_interval if interval is None else interval,
                                     window, share)

    def stop(self) -> None:
        self.stops += 1
        super().stop()

    # The guest's side, driven by the fake module and by tests.
    def kmsg(self, text: str) -> None:
        self.feed.say([text])

    def feed_lines(self, lines: list[str]) -> None:
        self.feed.say(lines)

    def crash(self, lines: Sequence[str] = PANIC_LOG) -> None:
        self.feed.say(lines)
        self._exit(0)  # panic=-1 -no-reboot: QEMU exits 0, like a clean power-off

    def hang(self) -> None:
        self.stalled = True

    def _exit(self, code: int) -> None:
        assert self.proc is not None
        self.proc.exit(code)  # calls _exited

    def _exited(self, code: int) -> None:
        self.fake_ssh.drop()
        self.feed.close()
        if self.console is not None:
            self.console.join()


class FakeFactory:
    """A `MachineFactory`: boot n uses `scenarios[n]` (the last one repeats) as FakeMachine
    keywords; a scenario may also be an exception instance, raised instead of booting."""

    def __init__(self, *scenarios: dict[str, Any] | BaseException) -> None:
        self.scenarios = list(scenarios) or [{}]
        self.machines: list[FakeMachine] = []
        self.calls = 0
        self.vcpus: list[int] = []  # each boot's vCPU count

    def __call__(self, prepared: Prepared, log_dir: Path, vcpus: int = 1) -> Machine:
        scenario = self.scenarios[min(self.calls, len(self.scenarios) - 1)]
        self.calls += 1
        self.vcpus.append(vcpus)
        if isinstance(scenario, BaseException):
            raise scenario
        machine = FakeMachine(log_dir, **scenario)
        self.machines.append(machine)
        return machine.start()

