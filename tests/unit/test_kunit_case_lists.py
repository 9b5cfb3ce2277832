"""Where KUnit's case lists are kept: the test module's own KUnit suites run when it loads, so
two checkouts of the harness (one kernel build, two module builds) must not share a list (one
would collect the other's cases and fail them as unreported)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from harness.plugin.kunit_items import case_list_file


@dataclass(repr=False)  # only what case_list_file reads counts, never a repr
class Build:
    key: str
    module: Path
    kunit_modules: tuple[Path, ...] = ()


def test_each_module_build_has_its_own_case_list(tmp_path):
    listing = tmp_path / "in_kernel.kunit"
    listing.write_text("io-pgtable-arm-selftests\n")
    kunit = (Path("/b/out/drivers/iommu/io-pgtable-arm-selftests.ko"),)
    one = Build("k1", Path("/b/module-aaaa/iopt_hil.ko"), kunit)
    other = Build("k1", Path("/b/module-bbbb/iopt_hil.ko"), kunit)
    assert case_list_file(tmp_path, one, listing) != case_list_file(tmp_path, other, listing)
    # the same build and module: the same list (an edit of the tree keeps it)
    again = Build("k1", Path("/b/module-aaaa/iopt_hil.ko"), kunit)
    assert case_list_file(tmp_path, one, listing) == case_list_file(tmp_path, again, listing)
    # another tree or config (build key), or another listing: another list
    assert case_list_file(tmp_path, Build("k2", one.module, kunit), listing) != \
        case_list_file(tmp_path, one, listing)
    listing2 = tmp_path / "more.kunit"
    listing2.write_text("*\n")
    assert case_list_file(tmp_path, one, listing2) != case_list_file(tmp_path, one, listing)
