"""Byte-level snapshot of a directory (including .git): proves a command left a tree alone."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path


def snapshot(root: Path) -> dict[str, tuple[int, int, str]]:
    """relative path -> (mode, mtime_ns, sha256 of content or link target)."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(dirnames + filenames):
            full = os.path.join(dirpath, name)
            st = os.lstat(full)
            if os.path.islink(full):
                digest = hashlib.sha256(os.readlink(full).encode()).hexdigest()
            elif os.path.isfile(full):
                h = hashlib.sha256()
                with open(full, "rb") as fh:
                    for chunk in iter(lambda: fh.read(1 << 20), b""):
                        h.update(chunk)
                digest = h.hexdigest()
            else:
                digest = "dir"
            # directory mtimes change when anything is created inside and removed again
            out[os.path.relpath(full, root)] = (st.st_mode, st.st_mtime_ns, digest)
    return out


def differences(before: dict, after: dict, limit: int = 20) -> list[str]:
    keys = sorted(set(before) | set(after))
    return [f"{k}: {before.get(k)} -> {after.get(k)}" for k in keys if before.get(k) != after.get(k)][:limit]
