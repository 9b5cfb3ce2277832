"""The machine's promises: a killed harness leaves no QEMU, shm file or run directory behind,
and the CLI's shell command reaches the guest over SSH."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.guest.machine import RUN_PREFIX, SHM_PREFIX, sweep_stale

pytestmark = pytest.mark.guest
REPO = Path(__file__).resolve().parents[2]

CHILD = """
import sys, time
from harness.guest.machine import Machine
from harness.build.pipeline import BuildRequest, prepare
p = prepare(BuildRequest(), progress=lambda m: None)
m = Machine(p.build, p.root, progress=lambda m: None).start()
print("UP", m.proc.pid, m.rundir, flush=True)
time.sleep(600)
"""


def _gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.1)
    return False


def test_killed_harness_leaves_nothing_behind(kernel_build):
    child = subprocess.Popen([sys.executable, "-c", CHILD], cwd=REPO, stdout=subprocess.PIPE,
                             text=True)
    try:
        line = child.stdout.readline()
        assert line.startswith("UP "), f"child did not boot a guest: {line!r}"
        _, qemu_pid, rundir = line.split()
        assert Path(rundir).stat().st_mode & 0o777 == 0o700
        child.send_signal(signal.SIGKILL)
        child.wait(10)
        assert _gone(int(qemu_pid), 10), "QEMU outlived the harness that started it"
        assert not list(Path("/dev/shm").glob(f"{SHM_PREFIX}{child.pid}-*"))
        assert rundir in sweep_stale() and not Path(rundir).exists()
    finally:
        if child.poll() is None:
            child.kill()


def test_cli_shell_runs_a_guest_command():
    proc = subprocess.Popen([sys.executable, "-m", "harness", "shell", "-c", "cat /proc/version; "
                             "ls /sys/kernel/debug/iopt_hil"], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    assert "Linux version 7." in out and "ctl" in out
    assert "ssh -i " in out and "root@127.0.0.1" in out
    leftovers = [p for p in Path("/tmp").glob(RUN_PREFIX + "*")
                 if (p / "owner").exists() and (p / "owner").read_text() == str(proc.pid)]
    assert leftovers == []


def test_provenance_is_recorded(guest, pytestconfig):
    import json

    from harness.plugin.fixtures import results_dir

    record = json.loads((results_dir(pytestconfig) / "provenance.json").read_text())
    assert len(record["build_id"]) == 40 and record["kernel_release"] == guest.info.release
    assert record["qemu_argv"][0] == "qemu-system-aarch64" and "edu,dma_mask=" in " ".join(record["qemu_argv"])
    for key in ("tree", "fragments", "toolchain.rustc", "toolchain.clang", "toolchain.qemu-system-arm"):
        assert record[key], key


def test_ssh_runs_commands_and_pushes_files(ssh):
    result = ssh.run("echo out; echo err >&2; exit 3")
    assert (result.status, result.stdout, result.stderr) == (3, "out\n", "err\n")
    payload = bytes(range(256)) * 64
    ssh.put(payload, "/tmp/pushed.bin", 0o600)
    assert ssh.run("md5sum /tmp/pushed.bin").check().stdout.split()[0] == \
        __import__("hashlib").md5(payload).hexdigest()
    assert ssh.run("stat -c %a /tmp/pushed.bin").check().stdout.strip() == "600"


def test_qemu_that_dies_at_start_is_one_exception(kernel_build, monkeypatch):
    """QEMU never connects to the listening QMP socket: accept fails at once (not at its
    timeout) and the error carries the exit status, the command line and QEMU's last words."""
    import harness.guest.machine as machine
    from harness.errors import QemuExited

    real = machine.qemu_argv
    monkeypatch.setattr(machine, "qemu_argv", lambda spec: real(spec) + ["-no-such-option"])
    started = time.monotonic()
    m = machine.Machine(kernel_build.build, kernel_build.root, progress=lambda msg: None)
    with pytest.raises(QemuExited) as info:
        m.start()
    assert time.monotonic() - started < 20
    err = info.value
    assert err.status == 1 and err.argv[0] == "qemu-system-aarch64" and "-no-such-option" in err.argv
    assert "invalid option" in err.console_tail and "QEMU exit status: 1" in str(err)
    assert not m.rundir.exists()
