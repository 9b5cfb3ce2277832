"""Two checkouts of the harness whose test modules differ (a developer's two branches, or a wheel
and a checkout) share one kernel build and never rebuild or replace each other's module."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.guest
REPO = Path(__file__).resolve().parents[2]


def build(checkout: Path) -> tuple[str, Path]:
    proc = subprocess.run([sys.executable, "-m", "harness", "build"], cwd=checkout, text=True,
                          capture_output=True, timeout=1800)
    sys.stdout.write(proc.stdout[-2000:] + proc.stderr[-2000:])
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout, Path(re.search(r"^module: (\S+)$", proc.stdout, re.M).group(1))


def test_a_second_checkouts_module_leaves_the_first_ones_build_alone(kernel_build, tmp_path):
    other = tmp_path / "other"
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                           cwd=REPO, capture_output=True, check=True).stdout.split(b"\0")
    for name in filter(None, files):
        src = REPO / name.decode()
        if src.is_file():
            dst = other / name.decode()
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.write_bytes(src.read_bytes())
    exec_rs = other / "images" / "module" / "exec.rs"
    exec_rs.write_text(exec_rs.read_text() + "\n// another checkout's module\n")

    _, ours = build(REPO)
    before = ours.stat().st_mtime_ns
    out, theirs = build(other)
    assert theirs != ours and theirs.exists()
    assert "make Image modules" not in out, "a different module rebuilt the kernel"
    out, again = build(REPO)
    assert again == ours and "nothing changed, make skipped" in out
    assert ours.stat().st_mtime_ns == before, "the other checkout replaced our module"
