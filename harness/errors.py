"""The harness's exception tree, in one place.

HarnessError
 ├── ToolchainError   build root or host toolchain cannot do what is asked
 │    └── HostPrerequisiteError  this account lacks something (user namespaces, subordinate ids)
 ├── TreeError        kernel tree is unusable (no Rust, no io_pgtable abstraction)
 ├── GitError         a git command on a tree or private clone failed (unknown rev, patch does not apply)
 ├── ConfigError      a requested Kconfig symbol did not survive olddefconfig
 ├── BuildError       make failed (carries the log path and its tail)
 ├── ImageError       the guest initramfs could not be assembled
 ├── MachineError     the guest did not come up or died
 │    ├── BootTimeout, GuestPanic, GuestHang, QemuExited
 │    └── BootFailedEarlier  a session's guest failed to boot before: no further boots
 ├── ChannelError     QMP or SSH failed
 ├── ModuleError      the debugfs test module answered outside its grammar
 ├── WalkError        a page table read from guest memory is malformed
 └── ContractViolation the kernel broke the io_pgtable contract (e.g. Ok with nothing mapped)
"""
from __future__ import annotations

import shlex
from dataclasses import dataclass
from typing import Sequence


class HarnessError(Exception):
    """Root of every error the harness raises on purpose."""


class ToolchainError(HarnessError):
    pass


@dataclass(frozen=True)
class Requirement:
    """One thing the host or account lacks, and how to provide it."""

    what: str
    fix: str


class HostPrerequisiteError(ToolchainError):
    """Everything missing, in one message, before anything is done."""

    def __init__(self, missing: Sequence[Requirement]) -> None:
        lines = ["this account cannot run the harness yet:"]
        lines += [f"  - {r.what}: {r.fix}" for r in missing]
        super().__init__("\n".join(lines))
        self.missing = list(missing)


class TreeError(HarnessError):
    pass


class GitError(HarnessError):
    pass


class ConfigError(HarnessError):
    def __init__(self, message: str, dropped: list[str] | None = None) -> None:
        super().__init__(message)
        self.dropped = dropped or []


class BuildError(HarnessError):
    def __init__(self, message: str, log: str | None = None, tail: str = "") -> None:
        super().__init__(message + (f"\n--- last lines of {log} ---\n{tail}" if tail else ""))
        self.log = log
        self.tail = tail


class ImageError(HarnessError):
    pass


class MachineError(HarnessError):
    """The guest did not come up or died. `status` is QEMU's exit status when it had exited
    (None while it still ran), `argv` the command line it was started with, `console_tail` the
    last console lines: one exception says what ran, how it ended and what it printed."""

    def __init__(self, message: str, console_tail: str = "", *, status: int | None = None,
                 argv: Sequence[str] = ()) -> None:
        parts = [message]
        if status is not None:
            parts.append(f"QEMU exit status: {status}")
        if argv:
            parts.append(f"QEMU command: {shlex.join(argv)}")
        if console_tail:
            parts.append(f"--- console tail ---\n{console_tail}")
        super().__init__("\n".join(parts))
        self.status = status
        self.argv = list(argv)
        self.console_tail = console_tail


class BootTimeout(MachineError):
    pass


class GuestPanic(MachineError):
    pass


class GuestHang(MachineError):
    pass


class QemuExited(MachineError):
    pass


class BootFailedEarlier(MachineError):
    def __init__(self, message: str, cause: BaseException) -> None:
        super().__init__(message)
        self.cause = cause


class ChannelError(HarnessError):
    pass


class ModuleError(HarnessError):
    pass


class WalkError(HarnessError):
    pass


class ContractViolation(HarnessError):
    pass
