"""What a guest costs the host: QEMU found below the process the harness started, its CPU read."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

from harness.guest.cpu import find_qemu, process_cpu

TICK = os.sysconf("SC_CLK_TCK")


def _proc(root: Path, pid: int, comm: str, children: list[int], utime: int = 0,
          stime: int = 0) -> None:
    d = root / str(pid)
    (d / "task" / str(pid)).mkdir(parents=True)
    (d / "comm").write_text(comm + "\n")
    (d / "task" / str(pid) / "children").write_text(" ".join(map(str, children)) + " ")
    # pid (comm) state ppid ... : utime and stime are fields 14 and 15
    rest = ["S", "1"] + ["0"] * 9 + [str(utime), str(stime)] + ["0"] * 30
    (d / "stat").write_text(f"{pid} ({comm} with ) paren) " + " ".join(rest) + "\n")


def test_qemu_is_found_below_the_wrappers_and_its_cpu_read(tmp_path):
    _proc(tmp_path, 10, "unshare", [11])
    _proc(tmp_path, 11, "sh", [12, 13])
    _proc(tmp_path, 12, "sleep", [])
    _proc(tmp_path, 13, "qemu-system-aar", [], utime=3 * TICK, stime=TICK // 2)
    assert find_qemu(10, tmp_path) == 13
    assert process_cpu(13, tmp_path) == 3.5


def test_no_qemu_and_a_vanished_process_read_as_nothing(tmp_path):
    _proc(tmp_path, 20, "unshare", [21])  # 21 has exited
    assert find_qemu(20, tmp_path) is None
    assert process_cpu(21, tmp_path) == 0.0
    with subprocess.Popen(["sleep", "30"]) as child:  # the real /proc: no QEMU below it
        try:
            assert find_qemu(child.pid) is None
            assert process_cpu(child.pid) >= 0.0
        finally:
            child.kill()
