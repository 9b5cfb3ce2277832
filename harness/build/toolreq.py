"""The tree's own tool minimums (scripts/min-tool-version.sh) and the build root that meets them.

trixie's build root is tried first (it also carries QEMU, the guest packages and the default
tree); a tree that needs a newer rustc, bindgen or LLVM than trixie has gets a sid build root,
cached beside it under its own name. No suite that meets them is a one-line refusal.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..errors import TreeError
from .arch import ARM64 as ARCH
from .buildroot import DEFAULT_SUITE, SUITES, BuildRoot
from .toolchain import Bind

SCRIPT = "scripts/min-tool-version.sh"
TOOLS = {"rustc": "rustc", "bindgen": "bindgen", "llvm": "clang"}  # script's name -> package


def version_tuple(text: str) -> tuple[int, ...]:
    """`1:19.0-63` -> (19, 0); `1.85.1+dfsg1-1` -> (1, 85, 1); `0.71.1` -> (0, 71, 1)."""
    text = text.split(":", 1)[-1]
    m = re.match(r"(\d+(?:\.\d+)*)", text.strip())
    return tuple(int(p) for p in m.group(1).split(".")) if m else ()


@dataclass(frozen=True)
class ToolMinimums:
    needed: dict[str, str]  # tool -> minimum version, as the tree's script prints it

    def unmet(self, versions: dict[str, str]) -> list[str]:
        """`rustc >= 1.90.0 (root has 1.85.1+dfsg1-1)` for each tool the versions fall short of."""
        out = []
        for tool, minimum in self.needed.items():
            have = versions.get(TOOLS[tool], "")
            if not have or version_tuple(have) < version_tuple(minimum):
                out.append(f"{tool} >= {minimum} (has {have or 'none'})")
        return out


def read_minimums(tree: Path, root: BuildRoot) -> ToolMinimums:
    """Run the tree's script inside the build root (the tree mounted read-only) for each tool.

    The answers depend on the script alone (it reads nothing else), so they are kept in the
    cache by the script's content: running it costs a build-root entry per tool (~0.4 s of
    every edit-loop run), reading the kept answers nothing."""
    script = tree / SCRIPT
    if not script.is_file():
        return ToolMinimums({})  # older trees: kbuild's own checks remain
    key = hashlib.sha256(script.read_bytes() + repr((ARCH.name, sorted(TOOLS))).encode())
    kept = root.cache / "toolreq" / f"{key.hexdigest()[:16]}.json"
    try:
        return ToolMinimums(dict(json.loads(kept.read_text())))
    except (OSError, ValueError, TypeError):
        pass
    needed = {}
    for tool in TOOLS:
        proc = root.run(["env", f"ARCH={ARCH.name}", f"SRCARCH={ARCH.name}", "sh", str(script), tool],
                        [Bind(tree, readonly=True)], check=False)
        out = proc.stdout.decode(errors="replace").strip()
        if proc.returncode == 0 and version_tuple(out):
            needed[tool] = out
    kept.parent.mkdir(parents=True, exist_ok=True)
    tmp = kept.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(needed))
    tmp.replace(kept)
    return ToolMinimums(needed)


def choose_root(tree: Path, default: BuildRoot, progress: Callable[[str], None]) -> BuildRoot:
    """The first suite whose build root meets the tree's minimums (made on first need)."""
    minimums = read_minimums(tree, default)
    shortfalls: dict[str, list[str]] = {}
    for name in SUITES:
        root = default if name == DEFAULT_SUITE else BuildRoot(default.cache, name)
        if name != DEFAULT_SUITE and not root.ready:
            progress(f"{tree} needs {'; '.join(shortfalls[DEFAULT_SUITE])}: making a {name} "
                     "build root for it")
            root.ensure(progress)
        unmet = minimums.unmet(root.versions())
        if not unmet:
            if name != DEFAULT_SUITE:
                progress(f"build root {name} chosen: {DEFAULT_SUITE} lacks "
                         f"{'; '.join(shortfalls[DEFAULT_SUITE])}")
            return root
        shortfalls[name] = unmet
    raise TreeError(f"{tree} needs tools no build root offers: "
                    + "; ".join(f"{n}: {', '.join(u)}" for n, u in shortfalls.items()))
