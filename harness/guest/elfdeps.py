"""Which files of the guest's sysroot its programs need at run time: each program, its dynamic
loader (PT_INTERP) and the closure of its DT_NEEDED libraries, read with pyelftools.

The packages' whole /usr is 29 MB, 20 of it glibc's gconv modules that nothing in the guest
loads; every boot unpacks the initramfs under TCG (~0.5 s of guest CPU for the whole /usr), so
the guest gets what its programs link against and nothing else.
"""
from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

from elftools.common.exceptions import ELFError
from elftools.elf.dynamic import DynamicSection
from elftools.elf.elffile import ELFFile
from elftools.elf.segments import InterpSegment

from ..errors import ImageError

# Where Debian's arm64 loader looks for libraries without an ld.so.cache (merged /usr).
LIBRARY_DIRS = ("usr/lib/aarch64-linux-gnu", "usr/lib")


MERGED = ("bin/", "sbin/", "lib/", "lib64/")  # merged /usr: the initramfs links these to usr/*


def _links(path: str, sysroot: Path) -> tuple[list[str], str]:
    """The symlinks from `path` (relative to sysroot) to the file they end at, and that file."""
    chain: list[str] = []
    for _ in range(16):
        if path.startswith(MERGED) and not os.path.lexists(sysroot / path):
            path = "usr/" + path
        full = sysroot / path
        if not full.is_symlink():
            return chain, path
        chain.append(path)
        target = os.readlink(full)
        parent = PurePosixPath(path).parent
        path = os.path.normpath(target.lstrip("/") if target.startswith("/")
                                else str(parent / target))
    raise ImageError(f"{sysroot / path}: too many levels of symbolic links")


def _dependencies(full: Path) -> tuple[list[str], str | None]:
    """(DT_NEEDED names, PT_INTERP path) of one ELF file."""
    try:
        with open(full, "rb") as f:
            elf = ELFFile(f)
            interp = next((seg.get_interp_name() for seg in elf.iter_segments()
                           if isinstance(seg, InterpSegment)), None)
            needed = [str(tag.needed) for section in elf.iter_sections()  # type: ignore[attr-defined]
                      if isinstance(section, DynamicSection)
                      for tag in section.iter_tags() if tag.entry.d_tag == "DT_NEEDED"]
    except (OSError, ELFError) as exc:
        raise ImageError(f"cannot read {full} as ELF: {exc}") from exc
    return needed, interp


def runtime_files(sysroot: Path, programs: list[str],
                  library_dirs: tuple[str, ...] = LIBRARY_DIRS) -> list[str]:
    """`programs` (paths relative to `sysroot`) and everything they load, as paths relative
    to `sysroot`: symlinks and the files they point at. A library not found is an error."""
    wanted: list[str] = []
    queue = list(programs)
    seen: set[str] = set()
    while queue:
        path = queue.pop(0)
        if path in seen:
            continue
        seen.add(path)
        chain, real = _links(path, sysroot)
        if not (sysroot / real).is_file():
            raise ImageError(f"{sysroot / path} is missing from the guest's packages")
        wanted += [p for p in (*chain, real) if p not in wanted]
        needed, interp = _dependencies(sysroot / real)
        if interp is not None:
            queue.append(interp.lstrip("/"))
        for name in needed:
            found = next((f"{d}/{name}" for d in library_dirs
                          if os.path.lexists(sysroot / d / name)), None)
            if found is None:
                raise ImageError(f"{real} needs {name}, which no guest package ships")
            queue.append(found)
    return wanted
