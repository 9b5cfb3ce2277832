"""The real `Machine` boot checks and hang detection, over a fake QEMU whose console is a golden
log (tests/fakes/machine.py): each way a boot can fail gives its own exception with the console
tail, and a failed boot leaves nothing behind."""
from __future__ import annotations

import time

import pytest

from harness.errors import BootTimeout, GuestHang, GuestPanic, MachineError, QemuExited
from harness.guest.initramfs import MODULE_FAILED
from tests.fakes.machine import CLEAN_BOOT, PANIC_LOG, FakeMachine
from tests.fakes.qmp import IDLE_PC, SPIN_PC

EARLY = CLEAN_BOOT[:60]  # up to somewhere in the middle of the boot


def boot_fails(tmp_path, exc_type, **kw):
    machine = FakeMachine(tmp_path / "log", **kw)
    with pytest.raises(exc_type) as info:
        machine.start()
    assert machine.stops == 1 and not machine.alive, "a failed boot must stop QEMU"
    assert not machine.rundir.exists(), "a failed boot must remove its run directory"
    return info.value, machine


def test_readiness_marker_boots(tmp_path):
    machine = FakeMachine(tmp_path / "log").start()
    try:
        assert machine.alive and machine.info is not None
        assert machine.info.release == "7.3.4"  # from "IOPT-HIL-READY 7.3.4"
        assert machine.info.ssh_port == machine.fake_qmp.port and machine.ssh is machine.fake_ssh
        assert "IOPT-HIL-READY 7.3.4" in (tmp_path / "log" / "console.log").read_text()
    finally:
        machine.stop()
    assert not machine.alive and not machine.rundir.exists()


def test_module_that_failed_to_load(tmp_path):
    log = [MODULE_FAILED if line == "iopt-hil: module loaded" else line for line in CLEAN_BOOT]
    assert MODULE_FAILED in log
    exc, _ = boot_fails(tmp_path, MachineError, boot_log=log)
    assert type(exc) is MachineError and "module did not load" in str(exc)
    assert MODULE_FAILED in exc.console_tail


def test_panic_while_booting(tmp_path):
    exc, _ = boot_fails(tmp_path, GuestPanic, boot_log=EARLY + PANIC_LOG)
    first = next(line for line in PANIC_LOG if "Unable to handle kernel" in line
                 or "Kernel panic" in line or "Internal error: Oops" in line)
    assert f"guest crashed while booting: {first}" in str(exc)
    assert PANIC_LOG[0] in exc.console_tail  # 60 lines of tail: the whole panic report


def test_qemu_exited_during_boot(tmp_path):
    exc, _ = boot_fails(tmp_path, QemuExited, boot_log=EARLY, exit_code=1)
    assert "QEMU exited during boot" in str(exc) and exc.status == 1
    assert "QEMU exit status: 1" in str(exc)
    assert exc.console_tail.splitlines()[-1] == EARLY[-1]


def test_boot_timeout(tmp_path):
    started = time.monotonic()
    exc, _ = boot_fails(tmp_path, BootTimeout, boot_log=EARLY, boot_timeout=0.15)
    assert 0.15 <= time.monotonic() - started < 3
    assert "guest not ready within" in str(exc) and exc.console_tail.splitlines()[-1] == EARLY[-1]


@pytest.fixture
def machine(tmp_path):
    m = FakeMachine(tmp_path / "log").start()
    yield m
    m.stop()


def test_stuck_pcs_and_a_quiet_console_are_a_hang(machine):
    with pytest.raises(GuestHang) as info:
        machine.raise_if_hung()
    assert machine.fake_qmp.samples == 8
    assert "no console output" in str(info.value) and f"CPU0: {SPIN_PC:#x}" in str(info.value)
    assert CLEAN_BOOT[-1] in info.value.console_tail


def _idle_with_ticks(away: int):
    """CPU0 spins; CPU1 sits in its idle loop but is elsewhere (a tick) in `away` of 8."""
    return lambda n: [SPIN_PC, IDLE_PC if n % 8 >= away else 0xffff_8000_8123_0000 + 0x40 * n]


def test_an_idle_vcpu_woken_now_and_then_still_counts_as_stuck(machine):
    """2 of 8 samples away from the idle loop: within the 75 % share, so the guest is hung
    (the docstring's rule: an idle CPU's ticks must not count as progress)."""
    machine.fake_qmp.pcs = _idle_with_ticks(2)
    assert machine.hang_evidence() is not None


def test_every_vcpu_in_the_idle_loop_is_an_idle_guest_not_a_hang(machine, monkeypatch):
    """A command that merely takes long (`sleep 30`) leaves both vCPUs waiting in cpu_do_idle:
    their PCs stand still too, but in the kernel's idle functions (read from vmlinux)."""
    from harness.build.elfcheck import IdleRanges

    monkeypatch.setattr(machine, "_idle_ranges", lambda: IdleRanges(((IDLE_PC - 0x20, IDLE_PC + 0x20),)))
    machine.fake_qmp.pcs = lambda n: [IDLE_PC, IDLE_PC]
    assert machine.hang_evidence() is None
    machine.fake_qmp.pcs = _idle_with_ticks(2)  # one vCPU spinning elsewhere: still a hang
    assert machine.hang_evidence() is not None


def test_a_vcpu_awake_more_than_a_quarter_of_the_time_is_not_a_hang(machine):
    machine.fake_qmp.pcs = _idle_with_ticks(3)
    assert machine.hang_evidence() is None
    machine.raise_if_hung()  # no exception


def test_a_vcpu_doing_work_is_not_a_hang(machine):
    machine.fake_qmp.pcs = lambda n: [SPIN_PC, 0xffff_8000_8100_0000 + 0x1000 * n]
    assert machine.hang_evidence() is None


def test_console_output_while_sampling_is_not_a_hang(machine):
    machine.fake_qmp.on_sample = lambda n: machine.kmsg("[   9.1] still alive") if n == 3 else None
    assert machine.hang_evidence() is None


def test_no_hang_verdict_without_evidence(machine):
    machine.fake_qmp.fail = True  # QMP unreachable: not evidence of a hang
    assert machine.hang_evidence() is None
    machine.fake_qmp.fail = False
    machine.crash()
    assert not machine.alive and machine.hang_evidence() is None


def test_barrier_waits_for_its_token_on_the_console(machine):
    mark = machine.console.mark()
    assert machine.barrier(timeout=1)
    assert [line.text for line in machine.console.since(mark)] == [
        f"iopt-hil-barrier-{__import__('os').getpid()}-1"]
    machine.crash()
    assert not machine.barrier(timeout=0.1)


def test_console_silent_since_before_sampling_is_quiet_however_slow_the_host(machine, monkeypatch):
    """On a loaded host the clock moves between reading it twice. The guest's last console line
    came before sampling began, so the console was quiet during the sampling, however much
    time passes between the check's own clock readings (it once compared two readings taken at
    different moments and, under load, called a hung guest live)."""
    import harness.guest.machine as machine_module

    base = time.monotonic()
    ticks = iter(range(1, 10_000))
    monkeypatch.setattr(machine_module.time, "monotonic", lambda: base + next(ticks))
    monkeypatch.setattr(machine_module.time, "sleep", lambda _s: None)
    monkeypatch.setattr(machine.console, "last_output", lambda: base + 0.5)  # just before sampling
    assert machine.hang_evidence() is not None
