"""Where the harness keeps what is expensive to make (build root, trees, builds, images), and the
file locks that let parallel harness processes share it."""
from __future__ import annotations

import fcntl
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import platformdirs


def cache_root() -> Path:
    """`$IOPT_HIL_CACHE`, else the XDG cache directory (~/.cache/iopt-hil)."""
    env = os.environ.get("IOPT_HIL_CACHE")
    path = Path(env) if env else Path(platformdirs.user_cache_dir("iopt-hil"))
    path.mkdir(parents=True, exist_ok=True)
    return path.resolve()


@contextmanager
def locked(lockfile: Path) -> Iterator[None]:
    """Serialize creation between parallel harness processes (pytest-xdist workers)."""
    lockfile.parent.mkdir(parents=True, exist_ok=True)
    with open(lockfile, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
