"""Two guests at once: `iopt-hil run -n 2` gives each pytest-xdist worker its own guest, with
its own SSH port, QMP socket, shared-memory file and run directory; the matrix cell is chosen
from the command line."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from harness.results.reports import read_junit

pytestmark = pytest.mark.guest
REPO = Path(__file__).resolve().parents[2]


def test_two_guests_run_one_matrix_cell_in_parallel(kernel_build, tmp_path):
    results = tmp_path / "results"
    proc = subprocess.run([sys.executable, "-m", "harness", "run", "--granule", "16K",
                           "--results", str(results), "-n", "2", "tests/guest/test_matrix.py",
                           "tests/guest/test_map_basic.py", "tests/guest/in_kernel.kunit"],
                          cwd=REPO, text=True,
                          capture_output=True)
    sys.stdout.write(proc.stdout[-4000:])
    assert proc.returncode == 0, proc.stdout[-3000:]
    cases, props = read_junit(results / "junit.xml")
    names = [c.name for c in cases]
    # the 16K cell: 21 matrix cases plus the two 16K leaves, and nothing of another granule
    # (KUnit belongs to the 4K cell: not even collected here)
    assert len(cases) == 23 and all("16K" in n or "32M" in n for n in names), names
    assert all(c.outcome == "passed" for c in cases)
    assert props["kernel_release"] == kernel_build.build.release  # provenance despite xdist
    records = [json.loads(p.read_text()) for p in sorted(results.glob("gw*/provenance.json"))]
    assert len(records) == 2, "expected one guest per worker"
    for key in ("ssh_port", "run_dir", "shm"):
        assert len({r[key] for r in records}) == 2, f"both guests share {key}: {records}"
    assert all(f"127.0.0.1:0-:22" in " ".join(r["qemu_argv"]) for r in records)
    # both guests were up at the same time
    (a0, a1), (b0, b1) = [(r["guest_up_since"], r["guest_down_at"]) for r in records]
    assert max(a0, b0) < min(a1, b1), records
    for record in records:
        assert not Path(record["run_dir"]).exists(), "run directory left behind"


def test_kunit_runs_once_for_all_workers(kernel_build, tmp_path):
    """Every xdist worker must collect the same KUnit items; one guest runs KUnit for all."""
    results = tmp_path / "results"
    proc = subprocess.run([sys.executable, "-m", "harness", "run", "--results", str(results),
                           "-n", "2", "tests/guest/in_kernel.kunit",
                           "tests/guest/test_map_basic.py"], cwd=REPO, text=True,
                          capture_output=True)
    assert proc.returncode == 0, proc.stdout[-3000:]
    cases, _ = read_junit(results / "junit.xml")
    kunit = [c for c in cases if "in_kernel" in c.name]
    assert len(kunit) >= 4 and all(c.outcome == "passed" for c in kunit), kunit
    assert len(list(results.glob("gw*/kunit"))) == 1, "KUnit ran in more than one guest"
