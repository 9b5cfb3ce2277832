"""Run a pytest session in this process, handing it a build the caller already prepared."""
from __future__ import annotations

from pathlib import Path

import pytest

from ..build.pipeline import Prepared
from .fixtures import PreparedBuild


def run_pytest(args: list[str], rootdir: Path, prepared: Prepared | None = None) -> int:
    """pytest.main with the iopt-hil defaults; `prepared` spares the session a second prepare."""
    plugins: list[object] = [PreparedBuild(prepared)] if prepared is not None else []
    return int(pytest.main(["-ra", f"--rootdir={rootdir}", "-p", "no:cacheprovider", *args],
                           plugins=plugins))
