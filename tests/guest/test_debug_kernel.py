"""Checks that need the debug kernel (`--kconfig debug`): allocation-failure injection inside
io-pgtable and kmemleak after a workload. Skipped, with the reason, on other builds."""
from __future__ import annotations

import pytest

from harness.pgtable.model import diff

pytestmark = pytest.mark.guest
K4, M2, PA = 0x1000, 0x20_0000, 0x40_0000_0000
FAIL = "/sys/kernel/debug/fail_page_alloc"


@pytest.fixture
def debug_kernel(kernel_build):
    if "debug" not in kernel_build.build.fragments:
        pytest.skip("needs the debug kernel: run with --kconfig debug")


def test_allocation_failure_maps_nothing_and_leaves_the_table(debug_kernel, pgtable, module):
    table = pgtable()
    assert table.map(0, PA, K4).mapped == K4
    before = table.walk()
    module.shell(f"echo 1 > {FAIL}/task-filter; echo N > {FAIL}/ignore-gfp-wait; "
                 f"echo 0 > {FAIL}/min-order; echo 1 > {FAIL}/verbose; echo 100 > {FAIL}/probability; "
                 f"echo 1 > {FAIL}/times; echo 1 > /proc/self/make-it-fail")
    try:
        r = table.map(0x40_0000_0000, PA, K4)  # a far iova: needs new L1..L3 tables
    finally:
        module.shell(f"echo 0 > /proc/self/make-it-fail; echo 0 > {FAIL}/probability")
    assert (r.ret, r.mapped) == (-12, 0), r
    after = table.walk()
    assert diff(before, after).empty, diff(before, after).describe()
    assert table.map(0x40_0000_0000, PA, K4).mapped == K4  # and it works once the fault is gone


def test_no_leak_after_a_workload(debug_kernel, pgtable, ssh):
    for _ in range(3):
        table = pgtable()
        for base in (0, M2 * 8, 1 << 39):
            assert table.map(base, PA, K4, 64).mapped == 64 * K4
            assert table.map(base + M2, PA, M2).mapped == M2
        assert table.unmap(0, K4, 64) == 64 * K4
        table.destroy()
        table.destroy = lambda: None  # the fixture must not destroy it again
    out = ssh.run("echo scan > /sys/kernel/debug/kmemleak; echo scan > /sys/kernel/debug/kmemleak;"
                  " cat /sys/kernel/debug/kmemleak", timeout=300).check().stdout
    assert "unreferenced object" not in out, out[:3000]
