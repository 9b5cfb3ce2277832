"""The console classifier against golden logs: two captured from our own guest (a Rust WARN and
a Rust panic on 7.3.4, and a clean boot), the others written in the kernel's formats."""
from pathlib import Path

import pytest

from harness.guest.splats import classify, kind_of, matching

GOLDEN = Path(__file__).parent / "golden"


def lines(name: str) -> list[str]:
    return (GOLDEN / name).read_text().splitlines()


def test_clean_boot_has_no_splats():
    assert classify(lines("boot-clean-7.3.log")) == []


def test_rust_warn_is_one_warning_ending_at_its_trace():
    log = lines("warn-rust-7.3.log")
    (splat,) = classify(log)
    assert splat.kind == "warning" and "iopt_hil.rs:" in splat.title
    assert splat.text.splitlines()[-1].startswith("---[ end trace")
    assert "Call trace:" in splat.text


def test_rust_panic_is_one_report_then_the_panic():
    splats = classify(lines("panic-rust-7.3.log"))
    assert [s.kind for s in splats] == ["rust-panic", "panic"]
    assert "kernel BUG at rust/helpers/bug.c" in splats[0].text
    assert "Internal error: Oops - BUG" in splats[0].text
    assert "panic requested through debugfs" in splats[0].text


def test_null_deref_oops_with_caller_ids():
    splats = classify(lines("oops-null-callerid.log"))
    assert [s.kind for s in splats] == ["oops", "panic"]
    assert "Internal error: Oops" in splats[0].text and "arm_lpae_iova_to_phys" in splats[0].text


def test_kasan_report():
    (splat,) = classify(lines("kasan-uaf.log"))
    assert splat.kind == "kasan" and "slab-use-after-free in __arm_lpae_unmap" in splat.title
    assert "Freed by task 71" in splat.text


def test_lockdep_is_not_a_plain_warning():
    (splat,) = classify(lines("lockdep-circular.log"))
    assert splat.kind == "lockdep"


def test_hung_task_rcu_stall_kmemleak_ubsan_smmu_fault_in_order():
    kinds = [s.kind for s in classify(lines("hung-rcu-kmemleak-ubsan.log"))]
    assert kinds == ["hung-task", "rcu-stall", "kmemleak", "ubsan", "iommu-fault"]


@pytest.mark.parametrize("line,kind", [
    ("[    1.0] WARNING: CPU: 0 PID: 1 at drivers/iommu/io-pgtable-arm.c:412 __arm_lpae_map+0x1/0x2",
     "warning"),
    ("WARNING: drivers/iommu/io-pgtable-arm.c:412 at __arm_lpae_map+0x1c8/0x350, CPU#0: sh/60",
     "warning"),
    ("[    2.0] BUG: KFENCE: out-of-bounds read in foo+0x1/0x2", "kfence"),
    ("BUG: KCSAN: data-race in a / b", "kcsan"),
    ("kernel BUG at mm/slub.c:42!", "bug"),
    ("random: crng init done", None),
    ("[   42.0] iopt_hil: smmu event F_TRANSLATION (0x10) sid=0x18 iova=0x1000 read", "iommu-fault"),
    ("iopt_hil: smmu event queue overflowed", "iommu-fault"),
    ("iopt_hil: SMMU enabled, stream table at 0x41230000", None),
    ("iopt-hil: WARNING text inside a message is not a splat", None),
])
def test_single_lines(line, kind):
    assert kind_of(line) == kind


def test_matching_filters_by_kind_and_text():
    splats = classify(lines("warn-rust-7.3.log") + lines("kasan-uaf.log"))
    assert len(matching(splats, "warning", r"iopt_hil\.rs")) == 1
    assert matching(splats, "warning", "io-pgtable-arm") == []
    assert len(matching(splats, "kasan")) == 1
