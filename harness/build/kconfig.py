"""Kconfig fragments: parse, merge in order, and check what survived olddefconfig. Pure."""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from ..resources import fragments_dir

_SET = re.compile(r"^(CONFIG_[A-Za-z0-9_]+)=(.*)$")
_UNSET = re.compile(r"^# (CONFIG_[A-Za-z0-9_]+) is not set$")


@dataclass(frozen=True)
class Dropped:
    symbol: str
    wanted: str | None  # None means "is not set"
    got: str | None

    def __str__(self) -> str:
        want = "n" if self.wanted is None else self.wanted
        have = "not set" if self.got is None else self.got
        return f"{self.symbol}: asked {want}, olddefconfig left {have}"


def parse(text: str) -> dict[str, str | None]:
    """Symbol -> value ('y', 'm', '"str"', '0x10') or None for `# CONFIG_X is not set`."""
    values: dict[str, str | None] = {}
    for line in text.splitlines():
        line = line.strip()
        if m := _SET.match(line):
            values[m.group(1)] = None if m.group(2) == "n" else m.group(2)
        elif m := _UNSET.match(line):
            values[m.group(1)] = None
    return values


def fragment_paths(names: list[str]) -> list[Path]:
    """`base` plus named fragments from guest-kernel-config/, or paths to the user's own
    (`default` names no extra fragment: the CI matrix's default-kernel cell)."""
    paths = []
    for name in ["base", *[n for n in names if n not in ("base", "default")]]:
        path = Path(name) if "/" in name or name.endswith(".config") else fragments_dir() / f"{name}.config"
        if not path.is_file():
            known = sorted(p.stem for p in fragments_dir().glob("*.config"))
            raise FileNotFoundError(f"no config fragment {name!r} (known: {', '.join(known)})")
        paths.append(path)
    return paths


def tiny_fragments(tree: Path, arch: str) -> tuple[str | None, list[Path]]:
    """What the tree's `make tinyconfig` reads (scripts/kconfig/Makefile): allnoconfig's
    KCONFIG_ALLCONFIG (relative to the tree, None where the tree has no tiny-base.config), then
    the tiny.config fragments of the kernel and of the architecture that exist."""
    base = "kernel/configs/tiny-base.config"
    fragments = [tree / "kernel/configs/tiny.config", tree / "arch" / arch / "configs/tiny.config"]
    return (base if (tree / base).is_file() else None), [p for p in fragments if p.is_file()]


def merge(fragments: list[str]) -> dict[str, str | None]:
    """Later fragments override earlier ones, as merge_config.sh does."""
    merged: dict[str, str | None] = {}
    for text in fragments:
        merged.update(parse(text))
    return merged


def render(requested: dict[str, str | None]) -> str:
    return "".join(f"# {s} is not set\n" if v is None else f"{s}={v}\n"
                   for s, v in requested.items())


def check(requested: dict[str, str | None], final: dict[str, str | None]) -> list[Dropped]:
    """Every requested symbol whose final value differs."""
    return [Dropped(sym, want, final.get(sym)) for sym, want in requested.items()
            if final.get(sym) != want]


def digest(fragments: list[str]) -> str:
    return hashlib.sha256("\0".join(fragments).encode()).hexdigest()
