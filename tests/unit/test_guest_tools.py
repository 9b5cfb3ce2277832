"""The guest's `iopt` command, run here by a POSIX sh against a stand-in for the debugfs file
(a plain file: what the script writes is what it then reads back, so a "request" that looks
like a reply exercises the reply parsing)."""
from __future__ import annotations

import subprocess
from pathlib import Path

from harness.guest.guest_tools import IOPT
from harness.pgtable.dump import coalesce
from harness.pgtable.lpae import GRANULES, decode, decode_mair
from harness.pgtable.walker import Leaf


def iopt(tmp_path: Path, *args: str, ctl: Path | None = None) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "iopt"
    script.write_text(IOPT)
    ctl = ctl or tmp_path / "ctl"
    return subprocess.run(["sh", str(script), *args], capture_output=True, text=True,
                          env={"IOPT_CTL": str(ctl), "PATH": "/usr/bin:/bin"})


def test_a_success_prints_the_reply_and_exits_0(tmp_path):
    (tmp_path / "ctl").touch()
    proc = iopt(tmp_path, "0", "create", "ret=0", "id=1")
    assert proc.returncode == 0 and proc.stdout == "0 create ret=0 id=1\n"


def test_an_error_reply_exits_1_with_the_errno_name(tmp_path):
    (tmp_path / "ctl").touch()
    proc = iopt(tmp_path, "0", "map", "ret=-17", "src=pgtable")
    assert proc.returncode == 1 and proc.stderr.strip() == "iopt: EEXIST"
    assert iopt(tmp_path, "0", "map", "ret=-999").stderr.strip() == "iopt: errno 999"


def test_a_refused_write_or_a_missing_module_exits_2(tmp_path):
    (tmp_path / "ro").mkdir()
    proc = iopt(tmp_path, "create", ctl=tmp_path / "ro")  # writing to a directory fails
    assert proc.returncode == 2 and "refused" in proc.stderr
    proc = iopt(tmp_path, "create", ctl=tmp_path / "missing")
    assert proc.returncode == 2 and "module loaded" in proc.stderr
    assert iopt(tmp_path).returncode == 1 and iopt(tmp_path, "--help").returncode == 0


def _leaf(iova: int, output: int, raw_attrs: int = 0x745) -> Leaf:
    raw = output | raw_attrs | 0x2  # a page at L3
    desc = decode(raw, 3, GRANULES[0x1000])
    return Leaf(iova, 0x1000, output, 3, "page", decode_mair(0xff44, desc.attr_index), desc, 0)


def test_contiguous_equal_leaves_coalesce_and_others_do_not():
    leaves = [_leaf(0x2000, 0x9000), _leaf(0x1000, 0x8000), _leaf(0x3000, 0xb000),
              _leaf(0x4000, 0xc000, raw_attrs=0x7c5)]
    ranges = coalesce(leaves)
    assert [(r.iova, r.size, r.output) for r in ranges] == [
        (0x1000, 0x2000, 0x8000), (0x3000, 0x1000, 0xb000), (0x4000, 0x1000, 0xc000)]
    assert ranges[0].attrs != ranges[2].attrs
