"""gdb on a live guest: a detached `--gdb` guest, gdb-multiarch from the build root in batch
mode, a breakpoint on io-pgtable-arm's C map function hit by a guest-side `iopt map`; the
backtrace names our module's Rust caller and the iova argument, the kernel's own gdb helpers
work (lx-dmesg), and the guest carries on afterwards."""
from __future__ import annotations

import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from harness.build.cachedir import cache_root
from harness.workflows import live

from .test_live_guest import iopt, left_behind, name  # noqa: F401 -- `name` is a fixture

pytestmark = pytest.mark.guest
REPO = Path(__file__).resolve().parents[2]
IOVA = 0x7654000


# A kernel build of its own when the cache is cold (~10-15 min on 2 cores beside other work).
@pytest.mark.timeout(3600)
def test_gdb_breaks_in_the_c_map_function_and_shows_the_rust_caller(name):
    start = iopt("shell", "--name", name, "--detach", "--gdb", timeout=3600)
    assert start.returncode == 0, start.stderr[-3000:]
    state = live.read_state(cache_root(), name)
    assert state.gdb_port and "-gdb tcp:127.0.0.1:" in Path(state.rundir, "qemu.argv").read_text().replace("\n", " ")
    created = iopt("ssh", name, "iopt", "create", "ias=39")
    table = int(re.search(r"\bid=(\d+)", created.stdout).group(1))

    gdb = subprocess.Popen(
        [sys.executable, "-m", "harness", "gdb", name, "-batch", "-ex", "break arm_lpae_map_pages",
         "-ex", "continue", "-ex", "bt 8", "-ex", "lx-dmesg", "-ex", "detach"],
        cwd=REPO, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(gdb.stdout.readline, "")), daemon=True)
    reader.start()
    # The breakpoint is set; gdb's "Continuing." may sit in its pipe buffer, and the guest stays
    # stopped until gdb continues, so the map below waits for it either way.
    deadline = time.monotonic() + 600  # the first use installs gdb-multiarch into the build root
    while not any("Breakpoint 1 at" in line for line in lines):
        assert gdb.poll() is None and time.monotonic() < deadline, "".join(lines)[-3000:]
        time.sleep(0.2)
    mapped = iopt("ssh", name, "iopt", "map", f"id={table}", f"iova={IOVA:#x}", "paddr=0x80000000",
                  "pgsize=0x1000", "pgcount=1", "prot=read")
    assert gdb.wait(timeout=120) == 0, "".join(lines)[-3000:]
    reader.join(10)
    out = "".join(lines)
    sys.stdout.write(out[-6000:])
    assert mapped.returncode == 0, mapped.stderr  # the guest went on once gdb detached
    assert re.search(r"Breakpoint 1, arm_lpae_map_pages \(.*iova=" + f"({IOVA}|{IOVA:#x})", out), out[-3000:]
    frames = [line for line in out.splitlines() if re.match(r"#\d+ ", line)]
    assert any("iopt_hil::" in f for f in frames), frames
    assert "iopt_hil: ready, protocol" in out, "lx-dmesg (the kernel's gdb helpers) did not work"
    assert iopt("ssh", name, "true").returncode == 0
    assert iopt("stop", name).returncode == 0
    assert left_behind(state) == []
