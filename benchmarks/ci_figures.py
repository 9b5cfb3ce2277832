"""Prints the figures for CI and patch verification: the matrix with one guest vs two guests
in parallel, and what `verify` costs per revision (rebuild and suite) on a git copy of the
default tree with a one-file patch.

    .venv/bin/python benchmarks/ci_figures.py [--skip-verify]
"""
from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests" / "harness"))


def iopt(*args: str) -> tuple[float, str]:
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "harness", *args], cwd=REPO, text=True,
                          capture_output=True)
    if proc.returncode not in (0, 1):
        sys.exit(f"iopt-hil {' '.join(args)} failed:\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}")
    return time.monotonic() - started, proc.stdout


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--skip-verify", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for workers in ("1", "2"):
            seconds, _ = iopt("run", "--results", f"{tmp}/n{workers}", "-n", workers,
                              "tests/guest/test_matrix.py")
            print(f"matrix (63 cases, 3 granules) with {workers} guest(s): {seconds:.1f} s wall")
        if args.skip_verify:
            return
        from harness.build.buildroot import BuildRoot
        from harness.build.cachedir import cache_root
        from harness.build.tree import default_tree
        from kernel_repo import HARMLESS, kernel_repo, write_series

        cache = cache_root()
        repo = kernel_repo(cache, default_tree(BuildRoot(cache).ensure(lambda m: None)).path)
        patches = write_series(repo, "HEAD", [HARMLESS], Path(tmp))
        seconds, out = iopt("verify", "--tree", str(repo), "--patch", str(patches[0]),
                            "--results", f"{tmp}/verify")
        report = json.loads(Path(f"{tmp}/verify/verify.json").read_text())
        builds = re.findall(r"\((rebuilt|cached), ([\d.]+) s\)", out)
        print(f"verify, one-file Rust patch, whole suite: {seconds:.1f} s wall "
              f"({report['base']['counts']['passed']} tests per side)")
        for side, (kind, secs) in zip(("base", "head"), builds):
            print(f"  {side}: build {kind} in {float(secs):.1f} s")


if __name__ == "__main__":
    main()
