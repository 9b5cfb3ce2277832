"""Named guests for debugging by hand: started detached, driven with `iopt` in the guest through
`iopt-hil ssh`, walked from the host with `iopt-hil walk`, listed, stopped; a guest whose QEMU
was killed is reported dead and cleaned. Nothing is left behind."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.build.cachedir import cache_root
from harness.workflows import live

pytestmark = pytest.mark.guest
REPO = Path(__file__).resolve().parents[2]


def iopt(*args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([sys.executable, "-m", "harness", *args], cwd=REPO, text=True,
                          capture_output=True, timeout=timeout)
    sys.stdout.write(f"$ iopt-hil {' '.join(args)}\n{proc.stdout[-3000:]}{proc.stderr[-2000:]}")
    return proc


def qemu_of(state: live.GuestState) -> list[int]:
    out = subprocess.run(["pgrep", "-f", f"^qemu-system-aarch64 .*{state.rundir}"],
                         capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def left_behind(state: live.GuestState) -> list[str]:
    found = [f"qemu pid {p}" for p in qemu_of(state)]
    found += [p for p in (state.rundir, state.control) if p and os.path.exists(p)]
    found += [str(p) for p in Path("/dev/shm").glob(f"iopt-hil-{state.pid}-*")]  # the server's RAM file
    if (live.live_dir(cache_root()) / state.name).exists():
        found.append(f"live/{state.name}")
    return found


@pytest.fixture
def name(kernel_build):
    name = f"t{os.getpid()}"
    yield name
    if (live.live_dir(cache_root()) / name).exists():
        iopt("stop", name)


def test_a_detached_guest_is_driven_walked_and_stopped(name):
    start = iopt("shell", "--name", name, "--detach")
    assert start.returncode == 0, start.stderr
    assert "ssh -i " in start.stdout and "-p " in start.stdout
    state = live.read_state(cache_root(), name)
    assert live.status_of(state) == "running" and len(qemu_of(state)) == 1
    ps = iopt("ps")
    assert re.search(rf"^{name} +running ", ps.stdout, re.M), ps.stdout

    again = iopt("shell", "--name", name, "--detach")
    assert again.returncode == 2 and "exists (running)" in again.stderr
    bad = iopt("shell", "--name", "../x", "--detach")
    assert bad.returncode == 2 and "plain word" in bad.stderr

    created = iopt("ssh", name, "iopt", "create", "ias=48")
    assert created.returncode == 0, created.stderr
    table = int(re.search(r"\bid=(\d+)", created.stdout).group(1))
    mapping = ["iopt", "map", f"id={table}", "iova=0x200000", "paddr=0x80000000", "pgsize=0x1000",
               "pgcount=3", "prot=read|write"]
    mapped = iopt("ssh", name, *mapping)
    assert mapped.returncode == 0 and "mapped=0x3000" in mapped.stdout, mapped.stdout
    overlap = iopt("ssh", name, *mapping)
    assert overlap.returncode == 1 and "iopt: EEXIST" in overlap.stderr, overlap.stderr
    refused = iopt("ssh", name, "iopt", "map", f"id={table}", "nonsense=1")
    assert refused.returncode == 2 and "refused" in refused.stderr

    walked = iopt("walk", name, "--json")
    assert walked.returncode == 0, walked.stderr
    (tree,) = [t for t in json.loads(walked.stdout) if t["id"] == table]
    assert [(r["iova"], r["size"], r["output"]) for r in tree["ranges"]] == [
        (0x200000, 0x3000, 0x80000000)]
    assert tree["findings"] == [] and "rw" in tree["ranges"][0]["attrs"]
    leaves = [e for lv in tree["levels"] for e in lv["entries"] if e["kind"] == "page"]
    assert [e["iova"] for e in leaves] == [0x200000, 0x201000, 0x202000]
    assert all(e["af"] and not e["read_only"] for e in leaves)
    text = iopt("walk", name, str(table))
    assert text.returncode == 0 and "0x200000..0x203000 -> 0x80000000" in text.stdout

    console = iopt("console", name, "--no-follow")
    assert console.returncode == 0 and "IOPT-HIL-READY" in console.stdout

    stop = iopt("stop", name)
    assert stop.returncode == 0, stop.stderr
    assert left_behind(state) == []
    assert name not in iopt("ps").stdout


def test_a_guest_whose_qemu_died_is_reported_dead_and_cleaned(name):
    assert iopt("shell", "--name", name, "--detach").returncode == 0
    state = live.read_state(cache_root(), name)
    (qemu,) = qemu_of(state)
    os.kill(qemu, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while live.status_of(live.read_state(cache_root(), name)) != "dead" and time.monotonic() < deadline:
        time.sleep(0.2)
    ps = iopt("ps")
    assert re.search(rf"^{name} +dead ", ps.stdout, re.M), ps.stdout
    assert iopt("ssh", name, "true").returncode == 2
    assert iopt("stop", name).returncode == 0
    assert left_behind(state) == []
