"""CPU time a guest costs the host: its QEMU process's user + system seconds (every thread:
the vCPUs under TCG and the device emulation), read from /proc. Under TCG the suite is CPU-bound
work on the host's cores, so CPU seconds, not wall time, are what a test's price is measured in."""
from __future__ import annotations

import os
from pathlib import Path

_TICK = os.sysconf("SC_CLK_TCK")
_QEMU = "qemu-system"


def process_cpu(pid: int, proc: Path = Path("/proc")) -> float:
    """User + system seconds of process `pid` (all its threads, living and exited); 0 once
    it is gone."""
    try:
        fields = (proc / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICK


def find_qemu(pid: int, proc: Path = Path("/proc"), depth: int = 6) -> int | None:
    """The QEMU process among `pid` and its descendants (it runs under unshare and the build
    root's wrappers, a few processes below the one the harness started)."""
    try:
        if (proc / str(pid) / "comm").read_text().startswith(_QEMU[:15]):
            return pid
        children = [int(c) for task in (proc / str(pid) / "task").iterdir()
                    for c in (task / "children").read_text().split()]
    except OSError:
        return None
    for child in children if depth else []:
        found = find_qemu(child, proc, depth - 1)
        if found is not None:
            return found
    return None
