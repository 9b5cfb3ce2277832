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
    # only where the module is on the stack: the shell's own pipe writes allocate pages too
    module.shell(f"echo 0 > {FAIL}/min-order; echo 1 > {FAIL}/verbose; "
                 + _fail_inside_module("fail_page_alloc"))
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


CTL = "/sys/kernel/debug/iopt_hil/ctl"


def _fail_inside_module(kind: str) -> str:
    """Shell lines arming the `kind` fault (fail_page_alloc, failslab, fail_usercopy) for this
    shell only, and only where our module is on the stack (nothing else the shell does can
    take a fault). An allocator's fault hits every such call until disarmed, not just the
    first: one injected failure is often absorbed by an allocation that has a fallback (SLUB
    retries a slab page at a lower order, kmemleak takes its metadata from a pool), so the one
    meant is never hit. A copy fails once (a writer may retry a write that keeps failing).
    failslab and fail_page_alloc ignore sleeping allocations (GFP_KERNEL) unless told not to;
    the stack is searched 32 frames deep (the allocator's own frames come first)."""
    d = f"/sys/kernel/debug/{kind}"
    times = 1 if kind == "fail_usercopy" else -1
    return (f"t=$(cat /sys/module/iopt_hil/sections/.text); s=$(cat /sys/module/iopt_hil/coresize); "
            f"echo $t > {d}/require-start; echo $((t + s)) > {d}/require-end; "
            f"if [ -e {d}/ignore-gfp-wait ]; then echo N > {d}/ignore-gfp-wait; fi; "
            f"echo 32 > {d}/stacktrace-depth; echo 1 > {d}/task-filter; echo 0 > {d}/interval; "
            f"echo 100 > {d}/probability; echo {times} > {d}/times; echo 1 > /proc/self/make-it-fail")


@pytest.mark.parametrize("kind,errno", [("fail_usercopy", 14), ("failslab", 12)])
def test_a_write_refused_before_its_reply_never_returns_the_last_batchs_replies(
        debug_kernel, module, kind, errno):
    """Item 5 of the hardening issue: a batch whose replies were stored but not read, then a
    write the module refuses before it could store anything of its own (EFAULT when the batch
    cannot be copied in, ENOMEM when its buffer cannot be allocated): reading back must never
    give the earlier batch's replies as this write's."""
    d = f"/sys/kernel/debug/{kind}"
    out = module.shell(
        f"exec 5> {CTL}; echo version >&5; "  # stored, never read
        + _fail_inside_module(kind) + "; "
        f"echo version >&5; echo \"@@W$?\"; "
        f"echo 0 > /proc/self/make-it-fail; echo 0 > {d}/probability; exec 5>&-; "
        f"while IFS= read -r l; do echo \"$l\"; done < {CTL}")
    assert "@@W1" in out, f"the armed write was not refused: {out}"
    replies = [line for line in out if not line.startswith("@@")]
    assert not any(" version ret=0" in line for line in replies), \
        f"the refused write returned the earlier batch's reply: {replies}"
    assert all(f"ret=-{errno}" in line for line in replies), replies  # its own refusal, if any
