"""Run KUnit test modules in a guest and return their parsed KTAP.

The suites are built as modules (no suite runs at boot, so ordinary guests stay fast); loading
one runs it, and its KTAP goes to the console, which the barrier makes complete before parsing.
"""
from __future__ import annotations

import fnmatch
import shlex
from dataclasses import dataclass
from pathlib import Path

from . import ktap
from ..errors import ChannelError
from .machine import Machine


@dataclass(frozen=True)
class KunitRun:
    module: str
    document: ktap.KtapDocument
    console: str  # what the guest printed while the module ran
    load_status: int


def select(available: tuple[Path, ...], patterns: list[str]) -> list[Path]:
    return [m for m in available if any(fnmatch.fnmatch(m.stem, p) for p in patterns)]


def run_module(machine: Machine, module: Path, timeout: float = 600) -> KunitRun:
    assert machine.console is not None
    ssh = machine.require_ssh()
    start = machine.console.mark()
    try:
        status = ssh.run(f"insmod /lib/modules/kunit/{shlex.quote(module.name)}", timeout=timeout).status
    except ChannelError:
        status = -1  # the guest died while the suite ran: the KTAP is cut short
    machine.barrier()
    lines = [line.text for line in machine.console.since(start)]
    return KunitRun(module.stem, ktap.parse(lines), "\n".join(lines), status)


def boot_suites(machine: Machine) -> KunitRun:
    """KTAP of the built-in suites (e.g. Rust doctests with `--kconfig doctests`), from boot."""
    assert machine.console is not None
    lines = [line.text for line in machine.console.since(0)]
    return KunitRun("boot", ktap.parse(lines), "\n".join(lines), 0)
