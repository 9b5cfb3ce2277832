"""bisect-run's build-failure triage: errors in the code under test are bad, others skip."""
from harness.workflows.bisect import BAD, SKIP, classify_build_failure, error_paths

RUST_LOG = """\
  RUSTC L rust/kernel.o
warning: unused variable: `x`
  --> /c/worktrees/k/tree/rust/kernel/alloc.rs:10:9
error[E0308]: mismatched types
   --> /c/worktrees/k/tree/rust/kernel/iommu/pgtable.rs:179:10
    |
179 |         (mapped, ret, 1)
    |          ^^^^^^^^^^^^^^^ expected a tuple with 2 elements
error: aborting due to 1 previous error
make[2]: *** [rust/Makefile:553: rust/kernel.o] Error 1
"""
C_LOG = """\
  CC      drivers/net/virtio_net.o
../tree/drivers/net/virtio_net.c:42:1: error: unknown type name 'oops'
   42 | oops int x;
make[4]: *** [scripts/Makefile.build:287: drivers/net/virtio_net.o] Error 1
"""
LINK_LOG = "ld.lld: error: undefined symbol: frobnicate\nmake[2]: *** [vmlinux] Error 1\n"


def test_error_paths_take_errors_not_warnings():
    assert error_paths(RUST_LOG) == ["/c/worktrees/k/tree/rust/kernel/iommu/pgtable.rs"]
    assert error_paths(C_LOG) == ["../tree/drivers/net/virtio_net.c"]
    assert error_paths(LINK_LOG) == []


def test_failure_in_the_abstraction_is_bad():
    result = classify_build_failure(RUST_LOG)
    assert result.status == BAD and "iommu/pgtable.rs" in result.reason


def test_failure_elsewhere_or_without_location_is_skipped():
    assert classify_build_failure(C_LOG).status == SKIP
    assert classify_build_failure(LINK_LOG).status == SKIP
    assert classify_build_failure(C_LOG.replace("drivers/net/virtio_net.c",
                                                "drivers/iommu/io-pgtable-arm.c")).status == BAD


def test_policy_overrides():
    assert classify_build_failure(RUST_LOG, "skip").status == SKIP
    assert classify_build_failure(C_LOG, "bad").status == BAD


MODULE_LOG = """\
  RUSTC [M] iopt_hil.o
error[E0599]: no method named `tgid` found for reference `&Task` in the current scope
   --> shim.rs:64:27
error: aborting due to 1 previous error
"""


def test_failure_in_any_file_of_the_test_module_is_bad():
    """rustc names the module's files bare when kbuild builds it with M=: every one of them
    counts, not only the crate root; a same-named file elsewhere in the tree does not."""
    for name in ("shim.rs", "request.rs", "iopt_hil.rs"):
        assert classify_build_failure(MODULE_LOG.replace("shim.rs", name)).status == BAD
        assert classify_build_failure(MODULE_LOG.replace("shim.rs", f"/c/b/module/{name}")).status == BAD
    assert classify_build_failure(MODULE_LOG.replace("shim.rs", "rust/kernel/request.rs")).status == SKIP
