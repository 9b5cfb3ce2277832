"""Run a pytest session in this process, handing it a build the caller already prepared."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from ..build.pipeline import Prepared
from .fixtures import PreparedBuild


def run_pytest(args: list[str], rootdir: Path, prepared: Prepared | None = None) -> int:
    """pytest.main with the iopt-hil defaults; `prepared` spares the session a second prepare."""
    plugins: list[object] = [PreparedBuild(prepared)] if prepared is not None else []
    return int(pytest.main(["-ra", f"--rootdir={rootdir}", "-p", "no:cacheprovider", *args],
                           plugins=plugins))


# What the user chose about parallelism, or a selection too narrow for several guests to pay off
# (each boots in ~3-4 s; a narrowed run is one or a few test files).
_CHOSEN = ("-n", "--numprocesses", "--dist", "-p", "--pdb", "--trace", "-s", "--capture",
           "-k", "-m", "--lf", "--last-failed", "--sw", "--stepwise")


def default_guests(pytest_args: list[str], names_tests: bool,
                   cores: int | None = None, memory_mib: int | None = None) -> int:
    """How many guests a whole-suite run uses when the user did not say (`-n N`; `-n 0`: one).

    Each TCG guest keeps one host core busy, and the suite is guest work, so a whole-suite run
    on N cores goes fastest with N + 1 guests (2 cores, 228 tests: 75 s with one guest, 45 s
    with 2, 41 s with 3, 42 s with 4; xdist's worksteal); the extra one fills the gaps while
    others wait on SSH or the host walk. Capped by memory (a guest is 1 GiB of shared memory
    plus QEMU) and at 8. 0 means no pytest-xdist."""
    if names_tests or any(a.split("=")[0] in _CHOSEN or
                          (a.startswith(("-n", "-p", "-k", "-m")) and a[:2] != "--")
                          for a in pytest_args):
        return 0
    cores = cores if cores is not None else len(os.sched_getaffinity(0))
    memory_mib = memory_mib if memory_mib is not None else _available_mib()
    guests = min(cores + 1, memory_mib // 1536, 8)
    return guests if cores >= 2 and guests >= 2 else 0


def _available_mib() -> int:
    """MemAvailable (free memory counts the page cache a kernel build leaves as used)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) >> 10
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") >> 20
