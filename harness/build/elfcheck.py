"""ELF checks before boot (pyelftools): the module matches the kernel it will be loaded into.

A mismatch here is a clear BuildError naming what differs, instead of a guest that refuses the
module (or worse, loads it) after a boot.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

from elftools.elf.elffile import ELFFile
from elftools.elf.sections import NoteSection, SymbolTableSection

from ..errors import BuildError


@dataclass(frozen=True)
class ModuleInfo:
    fields: dict[str, list[str]]  # .modinfo key -> values
    undefined: frozenset[str]
    kunit_suites: bool  # carries a .kunit_test_suites section

    @property
    def vermagic(self) -> str:
        return (self.fields.get("vermagic") or [""])[0]


def module_info(path: Path) -> ModuleInfo:
    with open(path, "rb") as fh:
        elf = ELFFile(fh)
        section = elf.get_section_by_name(".modinfo")
        if section is None:
            raise BuildError(f"{path} has no .modinfo section: not a kernel module")
        fields: dict[str, list[str]] = {}
        for entry in section.data().split(b"\0"):
            if b"=" in entry:
                key, value = entry.decode(errors="replace").split("=", 1)
                fields.setdefault(key, []).append(value)
        undefined = set()
        symtab = elf.get_section_by_name(".symtab")
        if isinstance(symtab, SymbolTableSection):
            for sym in symtab.iter_symbols():
                if sym.name and sym["st_shndx"] == "SHN_UNDEF":
                    undefined.add(sym.name)
        kunit = elf.get_section_by_name(".kunit_test_suites") is not None
    return ModuleInfo(fields, frozenset(undefined), kunit)


def build_id(vmlinux: Path) -> str:
    with open(vmlinux, "rb") as fh:
        for section in ELFFile(fh).iter_sections():
            if isinstance(section, NoteSection):
                for note in section.iter_notes():
                    if note["n_type"] == "NT_GNU_BUILD_ID":
                        return str(note["n_desc"])
    return ""


def exported_symbols(symvers: Path) -> set[str]:
    """Module.symvers: `crc\\tsymbol\\tmodule\\texport-type\\tnamespace` per line."""
    names = set()
    for line in symvers.read_text(errors="replace").splitlines():
        parts = line.split("\t")
        if len(parts) >= 2:
            names.add(parts[1])
    return names


def check_module(module: Path, release: str, symvers: Path) -> ModuleInfo:
    """vermagic names the built kernel, the license lets it use GPL exports, every undefined
    symbol is exported by the kernel (or by a module the harness also loads)."""
    info = module_info(module)
    if not info.vermagic.startswith(release + " "):
        raise BuildError(f"{module.name}: vermagic {info.vermagic!r} does not match the kernel "
                         f"release {release!r}")
    if not any(lic in ("GPL", "GPL v2", "Dual MIT/GPL") for lic in info.fields.get("license", [])):
        raise BuildError(f"{module.name}: license {info.fields.get('license')} cannot use the "
                         "GPL-only io-pgtable exports")
    missing = sorted(info.undefined - exported_symbols(symvers))
    if missing:
        raise BuildError(f"{module.name} needs symbols the kernel does not export: "
                         + ", ".join(missing[:10]) + (" ..." if len(missing) > 10 else ""))
    return info


def kunit_modules(out: Path) -> list[Path]:
    """Every KUnit test module the build produced (by its .kunit_test_suites section)."""
    return sorted(p for p in out.rglob("*.ko") if module_info(p).kunit_suites)


@dataclass(frozen=True)
class IdleRanges:
    """Address ranges of the kernel's idle-loop functions, to tell an idle vCPU (waiting in
    WFI) from one spinning: both keep their PC in one place."""

    ranges: tuple[tuple[int, int], ...]

    def contains(self, pc: int) -> bool:
        return any(start <= pc < end for start, end in self.ranges)


IDLE_FUNCTIONS = ("cpu_do_idle", "arch_cpu_idle", "default_idle_call", "do_idle",
                  "cpu_idle_poll", "cpuidle_idle_call")


@functools.lru_cache(maxsize=8)
def idle_ranges(vmlinux: Path) -> IdleRanges:
    """From vmlinux's symbol table (empty if it has none: then nothing counts as idle); ~3 s,
    so read once per vmlinux."""
    found = []
    try:
        with open(vmlinux, "rb") as fh:
            symtab = ELFFile(fh).get_section_by_name(".symtab")
            if isinstance(symtab, SymbolTableSection):
                for sym in symtab.iter_symbols():
                    if sym.name in IDLE_FUNCTIONS and sym["st_size"]:
                        found.append((sym["st_value"], sym["st_value"] + sym["st_size"]))
    except (OSError, ValueError):
        pass
    return IdleRanges(tuple(found))
