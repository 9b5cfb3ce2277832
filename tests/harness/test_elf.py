"""ELF checks on the real build: the module fits the kernel, and a mismatch is a clear error."""
from __future__ import annotations

import pytest

from harness.build.elfcheck import build_id, check_module, module_info
from harness.errors import BuildError

pytestmark = pytest.mark.guest


def test_built_module_matches_its_kernel(kernel_build):
    b = kernel_build.build
    info = check_module(b.module, b.release, b.out / "Module.symvers")
    assert info.vermagic.split()[0] == b.release
    assert info.fields["name"] == ["iopt_hil"] and "alloc_io_pgtable_ops" in info.undefined
    assert len(build_id(b.vmlinux)) == 40 and b.build_id == build_id(b.vmlinux)
    assert any(m.stem == "io-pgtable-arm-selftests" for m in b.kunit_modules)
    # our module carries its own KUnit suites (iopt_hil_record, iopt_hil_request), which run
    # whenever it loads at boot; it is not one of the modules loaded on demand for KUnit
    assert module_info(b.module).kunit_suites and b.module not in b.kunit_modules


def _patched(src, tmp_path, old: bytes, new: bytes):
    data = src.read_bytes()
    assert old in data and len(old) == len(new)
    dst = tmp_path / src.name
    dst.write_bytes(data.replace(old, new))
    return dst


def test_vermagic_mismatch_is_reported(kernel_build, tmp_path):
    b = kernel_build.build
    bad = _patched(b.module, tmp_path, f"vermagic={b.release} ".encode(),
                   f"vermagic={b.release[:-1]}9 ".encode())
    with pytest.raises(BuildError, match="vermagic"):
        check_module(bad, b.release, b.out / "Module.symvers")


def test_missing_kernel_symbol_is_reported(kernel_build, tmp_path):
    b = kernel_build.build
    symvers = tmp_path / "Module.symvers"
    symvers.write_text("".join(line + "\n" for line in (b.out / "Module.symvers").read_text()
                               .splitlines() if "\talloc_io_pgtable_ops\t" not in line))
    with pytest.raises(BuildError, match="alloc_io_pgtable_ops"):
        check_module(b.module, b.release, symvers)
