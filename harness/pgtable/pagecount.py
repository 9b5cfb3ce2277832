"""How many pages io-pgtable holds, counted twice: by the guest's page allocator and by the walk.

io-pgtable-arm allocates every table with `iommu_alloc_pages_node_sz()` (7.3 and 7.2,
`drivers/iommu/iommu-pages.c`), which adds each allocation's pages to the node counter
NR_IOMMU_PAGES (`nr_iommu_pages` in /proc/vmstat) and takes them off when it frees them. A table
io-pgtable forgets without freeing (a leaked table) is still counted, but no walk reaches it:
comparing the two counts is how the suite sees a leak the walk alone cannot.

The counter is per-CPU batched (mm/vmstat.c): each CPU keeps a difference of at most its
`stat_threshold` (shown per CPU in /proc/zoneinfo as "vm stats threshold") before folding it into
the global value, and the vmstat shepherd folds the rest about once a second. So a single read is
exact only to the sum of the thresholds (`PageCounter.slack`), and a read taken after the counter
has held still for longer than the shepherd's period is exact (`settled`). Faster still, and
exact at once: a read of `/proc/sys/vm/stat_refresh` folds every CPU's difference in before it
returns (`exact`). 7.3's base config has /proc/sys (its SYSCTL, once PROC_SYSCTL); a kernel
without it falls back to `settled`.
"""
from __future__ import annotations

import re
import time
from dataclasses import dataclass

from ..errors import ModuleError
from ..guest.modclient import ModuleClient
from ..guest.ssh import SshChannel
from .walker import Walk

PAGE_SIZE = 0x1000  # the guest kernel's page (arm64 tinyconfig: CONFIG_ARM64_4K_PAGES)
MIN_TABLE = 64  # __arm_lpae_alloc_pages() allocates at least 64 bytes (small top-level tables)
_THRESHOLD = re.compile(r"^\s*vm stats threshold:\s*(\d+)", re.M)


def table_pages(walk: Walk) -> int:
    """Pages the walked tables occupy as the allocator counts them: each table is one
    allocation of its size rounded up to a power-of-two number of pages (`get_order`)."""
    total = 0
    for table in walk.tables:
        size, pages = max(table.entries * 8, MIN_TABLE), 1
        while pages * PAGE_SIZE < size:
            pages *= 2
        total += pages
    return total


@dataclass(frozen=True)
class IommuPages:
    """One read of nr_iommu_pages, and how far it may be from the exact count."""

    value: int
    slack: int  # sum over CPUs of the vmstat threshold: |value - exact| <= slack


class PageCounter:
    """Reads the guest's nr_iommu_pages through a guest shell of its own (so the test's module
    client stays clean for the next test). Close it, or use it as a context manager."""

    def __init__(self, ssh: SshChannel) -> None:
        self._shell = ModuleClient(ssh)
        try:
            zoneinfo = "\n".join(self._shell.shell("cat /proc/zoneinfo"))
            cpus = len(self._shell.shell("grep '^processor' /proc/cpuinfo")) or 1
        except BaseException:
            self._shell.close()
            raise
        # One threshold per CPU and zone; a node counter folds at the largest of its CPU's.
        thresholds = [int(t) for t in _THRESHOLD.findall(zoneinfo)]
        if not thresholds:
            self._shell.close()
            raise ModuleError("no vm stats threshold in /proc/zoneinfo")
        self.slack = max(thresholds) * cpus
        self.cpus = cpus

    def __enter__(self) -> "PageCounter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._shell.close()

    def _value(self) -> int:
        return self._parse(self._shell.shell("grep '^nr_iommu_pages ' /proc/vmstat"))

    @staticmethod
    def _parse(out: list[str]) -> int:
        for line in out:
            if line.startswith("nr_iommu_pages "):
                return int(line.split()[1])
        raise ModuleError(f"nr_iommu_pages missing from /proc/vmstat: {out}")

    def read(self) -> IommuPages:
        """The counter now, exact to `slack`."""
        return IommuPages(self._value(), self.slack)

    def exact(self) -> int:
        """The exact counter now: every CPU's difference folded in by stat_refresh, or, on a
        kernel without /proc/sys, the counter once it has `settled`. Call it only when no table
        request is running."""
        out = self._shell.shell("cat /proc/sys/vm/stat_refresh > /dev/null 2>&1 && echo refreshed; "
                                "grep '^nr_iommu_pages ' /proc/vmstat")
        if "refreshed" not in out:
            return self.settled()
        return self._parse(out)

    def settled(self, hold: float = 1.6, timeout: float = 8.0, interval: float = 0.2) -> int:
        """The exact counter: read until it has not moved for `hold` seconds (longer than the
        shepherd's ~1 s period, so every CPU's difference has been folded in). Call it only
        when no table request is running."""
        started = time.monotonic()
        value, since = self._value(), started
        while True:
            now = time.monotonic()
            if now - since >= hold:
                return value
            if now - started > timeout:
                raise ModuleError(f"nr_iommu_pages still moving after {timeout:g} s")
            time.sleep(interval)
            again = self._value()
            if again != value:
                value, since = again, time.monotonic()
