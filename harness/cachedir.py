"""Where the harness keeps what is expensive to make: build root, trees, builds, images."""
from __future__ import annotations

import os
from pathlib import Path

import platformdirs


def cache_root() -> Path:
    """`$IOPT_HIL_CACHE`, else the XDG cache directory (~/.cache/iopt-hil)."""
    env = os.environ.get("IOPT_HIL_CACHE")
    path = Path(env) if env else Path(platformdirs.user_cache_dir("iopt-hil"))
    path.mkdir(parents=True, exist_ok=True)
    return path.resolve()
