"""Build the harness's wheel from the repository's files, the way a user's `pip wheel` would.

The sources are copied first (tracked and untracked files git would not ignore), so setuptools'
`build/` directory lands in the copy, never in the repository. pip's own configuration supplies
the index for the build backend (setuptools, in an isolated build environment); `--no-deps`
leaves the runtime dependencies to the install.
"""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def source_files(repo: Path = REPO) -> list[str]:
    out = subprocess.run(["git", "-C", str(repo), "ls-files", "-z", "--cached", "--others",
                          "--exclude-standard"], check=True, capture_output=True).stdout
    return [name for name in out.decode().split("\0") if name and (repo / name).is_file()]


def build_wheel(out: Path, repo: Path = REPO) -> Path:
    """The wheel built from a copy of `repo` into `out`; its path."""
    src = out / "src"
    for name in source_files(repo):
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(repo / name, src / name)
    dist = out / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps",
                    "--disable-pip-version-check", "-q", "-w", str(dist), str(src)], check=True)
    wheels = list(dist.glob("iopt_hil-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]
