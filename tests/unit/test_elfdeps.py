"""The guest's programs and what they load, found through their ELF headers (host binaries
stand in for the arm64 ones: the rules are the same)."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from harness.errors import ImageError
from harness.guest.elfdeps import runtime_files

HOST_LIBS = "usr/lib/x86_64-linux-gnu"
TRUE = Path("/usr/bin/true")
LIBC = Path("/lib/x86_64-linux-gnu/libc.so.6")
LOADER = Path("/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2")
pytestmark = pytest.mark.skipif(not (TRUE.exists() and LIBC.exists() and LOADER.exists()),
                                reason="needs an x86-64 Debian host's true, libc and loader")


def _sysroot(tmp_path: Path, with_libc: bool = True) -> Path:
    root = tmp_path / "sysroot"
    (root / "usr/bin").mkdir(parents=True)
    (root / HOST_LIBS).mkdir(parents=True)
    (root / "usr/lib64").mkdir()
    (root / "usr/share/doc").mkdir(parents=True)
    (root / "usr/share/doc/unneeded").write_text("not loaded by anything\n")
    shutil.copy(TRUE, root / "usr/bin/true")
    shutil.copy(LOADER, root / HOST_LIBS / LOADER.name)
    # merged /usr: the loader's path goes through lib64 -> usr/lib64, then a relative link
    (root / "usr/lib64" / LOADER.name).symlink_to(f"../lib/x86_64-linux-gnu/{LOADER.name}")
    if with_libc:
        shutil.copy(LIBC, root / HOST_LIBS / "libc.so.6.real")
        (root / HOST_LIBS / "libc.so.6").symlink_to("libc.so.6.real")
    return root


def test_a_program_brings_its_loader_and_libraries_through_their_links(tmp_path):
    root = _sysroot(tmp_path)
    files = runtime_files(root, ["usr/bin/true"], (HOST_LIBS,))
    assert files == ["usr/bin/true", f"usr/lib64/{LOADER.name}", f"{HOST_LIBS}/{LOADER.name}",
                     f"{HOST_LIBS}/libc.so.6", f"{HOST_LIBS}/libc.so.6.real"]


def test_a_library_no_package_ships_is_an_error(tmp_path):
    root = _sysroot(tmp_path, with_libc=False)
    with pytest.raises(ImageError, match="needs libc.so.6, which no guest package ships"):
        runtime_files(root, ["usr/bin/true"], (HOST_LIBS,))


def test_a_file_that_is_not_elf_is_an_error(tmp_path):
    root = _sysroot(tmp_path)
    (root / "usr/bin/script").write_text("#!/bin/sh\n")
    with pytest.raises(ImageError, match="cannot read .* as ELF"):
        runtime_files(root, ["usr/bin/script"], (HOST_LIBS,))
