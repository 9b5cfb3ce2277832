"""Run KUnit test modules in a guest and return their parsed KTAP.

The suites are built as modules (no suite runs at boot, so ordinary guests stay fast); loading
one runs it. Results are read from KUnit's own record, `/sys/kernel/debug/kunit/SUITE/results`
(a KTAP document per suite), not from the console: a console can lose or reorder lines under
load (a CI run once lost one case's `ok` line), KUnit's record cannot. The console is the
fallback only when the guest died and its debugfs is out of reach.
"""
from __future__ import annotations

import fnmatch
import shlex
from dataclasses import dataclass
from pathlib import Path

from . import ktap
from ..errors import ChannelError
from .machine import Machine

RESULTS_ROOT = "/sys/kernel/debug/kunit"
SUITE_MARK = "@@iopt-hil kunit suite "  # a line KTAP never starts with
_DUMP = (f"cd {RESULTS_ROOT} 2>/dev/null && for s in *; do [ -f \"$s/results\" ] || continue; "
         f"echo \"{SUITE_MARK}$s\"; cat \"$s/results\"; done; true")


@dataclass(frozen=True)
class KunitRun:
    module: str
    document: ktap.KtapDocument
    console: str  # what the guest printed while the module ran
    load_status: int
    source: str = "debugfs"  # where `document` came from: "debugfs" or "console"


def select(available: tuple[Path, ...], patterns: list[str]) -> list[Path]:
    return [m for m in available if any(fnmatch.fnmatch(m.stem, p) for p in patterns)]


def split_suite_dump(text: str) -> dict[str, str]:
    """The output of `_DUMP` as {suite name: its results file}."""
    suites: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in text.splitlines():
        if line.startswith(SUITE_MARK):
            current = suites.setdefault(line[len(SUITE_MARK):], [])
        elif current is not None:
            current.append(line)
    return {name: "\n".join(lines) for name, lines in suites.items()}


def merge(documents: list[ktap.KtapDocument]) -> ktap.KtapDocument:
    """One document of several suites' documents, as the console would have shown them."""
    results = [r for d in documents for r in d.results]
    orphans = [r for d in documents for r in d.orphans]
    planned = sum(d.planned or 0 for d in documents) if documents else None
    return ktap.KtapDocument(results, planned, all(d.complete for d in documents), orphans)


def recorded_suites(machine: Machine, timeout: float = 60) -> dict[str, ktap.KtapDocument]:
    """Every suite KUnit has a record of in this guest, parsed."""
    out = machine.require_ssh().run(_DUMP, timeout=timeout).stdout
    return {name: ktap.parse(text.splitlines()) for name, text in split_suite_dump(out).items()}


def run_module(machine: Machine, module: Path, timeout: float = 600) -> KunitRun:
    assert machine.console is not None
    ssh = machine.require_ssh()
    before = set(recorded_suites(machine))
    start = machine.console.mark()
    try:
        status = ssh.run(f"insmod /lib/modules/kunit/{shlex.quote(module.name)}", timeout=timeout).status
    except ChannelError:
        status = -1  # the guest died while the suite ran: the KTAP is cut short
    machine.barrier()
    lines = [line.text for line in machine.console.since(start)]
    console = "\n".join(lines)
    if status != -1:
        try:
            suites = recorded_suites(machine)
        except ChannelError:
            suites = {}
        new = [doc for name, doc in suites.items() if name not in before]
        if new:
            return KunitRun(module.stem, merge(new), console, status)
    return KunitRun(module.stem, ktap.parse(lines), console, status, source="console")


def boot_suites(machine: Machine) -> KunitRun:
    """The suites that ran while the guest booted (the test module's own, and built-in ones
    such as the Rust doctests with `--kconfig doctests`)."""
    assert machine.console is not None
    machine.barrier()
    lines = [line.text for line in machine.console.since(0)]
    try:
        suites = recorded_suites(machine)
    except ChannelError:
        suites = {}
    if not suites:  # the guest died, or a config without KUNIT_DEBUGFS
        return KunitRun("boot", ktap.parse(lines), "\n".join(lines), 0, source="console")
    return KunitRun("boot", merge(list(suites.values())), "\n".join(lines), 0)
