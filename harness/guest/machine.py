"""One QEMU guest: run directory, launch, readiness, channels, and a teardown that leaves nothing.

Lifecycle: `Machine(...).start()` boots and returns once the guest printed its readiness marker
and SSH answers; `stop()` (or the context manager) quits QEMU and removes the run directory.
QEMU gets SIGKILL if the harness dies (PR_SET_PDEATHSIG); the shared-memory file is unlinked as
soon as both QEMU and the harness have it open; stale run directories of dead harnesses are swept.
"""
from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import paramiko

from ..build.buildroot import BuildRoot
from ..build.elfcheck import IdleRanges, idle_ranges
from .console import PANIC, Console
from .cpu import find_qemu, process_cpu
from ..errors import BootTimeout, ChannelError, GuestHang, GuestPanic, MachineError, QemuExited
from .guestmem import ShmMemory
from .initramfs import MODULE_FAILED, READY, build_initramfs
from ..build.kbuild import KernelBuild
from .qemu_cmd import MachineSpec, qemu_argv
from .qmp import QmpChannel
from .ssh import SshChannel, make_key
from ..timeline import TIMELINE
from ..build.toolchain import Bind, die_with_parent

RUN_PREFIX = "iopt-hil-run-"
SHM_PREFIX = "iopt-hil-"
SHM_DIR = "/dev/shm"
READY_RE = re.compile(re.escape(READY))
ABORT_RE = re.compile(PANIC.pattern + "|" + re.escape(MODULE_FAILED))
QMP_ACCEPT_TIMEOUT = 30.0  # QEMU connects while it starts, well before the kernel runs


@dataclass
class BootInfo:
    seconds_to_ready: float
    release: str
    ssh_port: int
    qemu_argv: list[str] = field(default_factory=list)


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now (for QEMU's gdb stub, which cannot pick its own)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _mostly_within(pcs: tuple[int, ...], window: int) -> int:
    """The largest number of samples that fall within one `window`-byte range."""
    return max(sum(1 for q in pcs if 0 <= q - p < window) for p in pcs)


def sweep_stale() -> list[str]:
    """Remove run directories and shared-memory directories whose owning harness process is
    gone. Entries that vanish meanwhile, dangling links and other users' entries are skipped:
    a sweep never stops a start."""
    removed = []
    for rundir in Path(tempfile.gettempdir()).glob(RUN_PREFIX + "*"):
        try:
            if rundir.is_symlink() or not rundir.is_dir():
                continue  # not ours: run directories are plain directories
            try:
                pid = int((rundir / "owner").read_text())
            except (OSError, ValueError):
                pid = -1
            if pid > 0 and _alive(pid):
                continue
            if pid < 0 and time.time() - rundir.stat().st_mtime < 60:
                continue  # being created right now
            shutil.rmtree(rundir)
            removed.append(str(rundir))
        except OSError:
            continue  # vanished, or another user's
    for shm in Path(SHM_DIR).glob(SHM_PREFIX + "*"):
        m = re.match(re.escape(SHM_PREFIX) + r"(\d+)-", shm.name)
        if not m or _alive(int(m.group(1))):
            continue
        try:
            if shm.is_dir() and not shm.is_symlink():
                shutil.rmtree(shm)
            else:
                shm.unlink()
            removed.append(str(shm))
        except OSError:
            continue
    return removed


def create_shared_ram(size: int) -> Path:
    """The guest's RAM file, made exclusively (0600) in a fresh private (0700) directory before
    QEMU starts, so nobody else can create it first and share the guest's memory. QEMU opens
    the existing file; the harness unlinks it once both sides have it mapped."""
    directory = Path(tempfile.mkdtemp(prefix=f"{SHM_PREFIX}{os.getpid()}-", dir=SHM_DIR))
    path = directory / "ram"
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        os.ftruncate(fd, size)
    finally:
        os.close(fd)
    return path


def remove_shared_ram(path: Path) -> None:
    path.unlink(missing_ok=True)
    try:
        path.parent.rmdir()
    except FileNotFoundError:
        pass


class Machine:
    def __init__(self, build: KernelBuild, root: BuildRoot, *, log_dir: Path | None = None,
                 boot_timeout: float = 180.0, memory_mib: int = 1024, smp: int = 2,
                 cmdline_extra: tuple[str, ...] = (), progress: Callable[[str], None] = print,
                 gdb: bool = False) -> None:
        self.build, self.root = build, root
        self.gdb_port = free_port() if gdb else 0
        self.boot_timeout, self.memory_mib, self.smp = boot_timeout, memory_mib, smp
        self.cmdline_extra = cmdline_extra
        self.progress = progress
        self.rundir = Path(tempfile.mkdtemp(prefix=RUN_PREFIX))  # mode 0700
        (self.rundir / "owner").write_text(str(os.getpid()))
        self.log_dir = log_dir or self.rundir
        self.key_path = self.rundir / "id_ed25519"
        self.proc: subprocess.Popen[bytes] | None = None
        self.console: Console | None = None
        self.qmp: QmpChannel | None = None
        self.ssh: SshChannel | None = None
        self.memory: ShmMemory | None = None
        self.info: BootInfo | None = None
        self.spec: MachineSpec | None = None
        self._barriers = 0
        self._kmsg: Any = None  # a guest `sh` kept open for barrier tokens (see barrier())
        self._boot_started = (0.0, 0.0)  # (wall, monotonic) when QEMU was started
        self._qemu_pid: int | None = None

    def __enter__(self) -> "Machine":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def start(self) -> "Machine":
        try:
            return self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> "Machine":
        sweep_stale()
        started = time.monotonic()
        what = f"boot ({self.log_dir.name})"
        with TIMELINE.phase(f"{what}: key and initramfs"):
            pubkey = make_key(self.key_path)
            initrd = build_initramfs(self.root, self.build.module, self.rundir, pubkey,
                                     self.progress, self.build.kunit_modules)
        self._boot_started = time.time(), time.monotonic()
        shm = create_shared_ram(self.memory_mib << 20)
        self.spec = MachineSpec(kernel=self.build.image, initrd=initrd, rundir=self.rundir,
                                shm_path=shm, memory_mib=self.memory_mib, smp=self.smp,
                                cmdline_extra=self.cmdline_extra, gdb_port=self.gdb_port)
        argv = qemu_argv(self.spec)
        (self.rundir / "qemu.argv").write_text("\n".join(argv) + "\n")
        binds = [Bind(self.rundir), Bind(self.build.image.parent, readonly=True)]
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.qmp = QmpChannel(self.spec.qmp_socket)  # listening before QEMU connects to it
        self.proc = subprocess.Popen(self.root.argv(argv, binds), stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     preexec_fn=die_with_parent)
        self.console = Console(self.proc.stdout, self.log_dir / "console.log")  # type: ignore[arg-type]
        threading.Thread(target=self._wake_qmp_on_exit, args=(self.proc, self.qmp),
                         name="qemu-exit", daemon=True).start()
        try:
            self.qmp.accept(QMP_ACCEPT_TIMEOUT)
        except ChannelError as exc:
            if self._qemu_gone():
                raise self._failure(QemuExited, "QEMU exited before it opened its QMP session") from exc
            raise self._failure(MachineError, str(exc)) from exc
        self.memory = ShmMemory(shm, self.spec.arch.ram_base, self.memory_mib << 20,
                                window=self.spec.dma_window)
        remove_shared_ram(shm)  # both sides hold it now; nothing can be left behind
        self._await_ready(started, argv)
        return self

    def _await_ready(self, started: float, argv: list[str]) -> None:
        """The readiness marker on the console, then SSH through QEMU's forwarded port."""
        assert self.console is not None and self.qmp is not None
        line = self.console.wait_for(READY_RE, self.boot_timeout, abort=ABORT_RE)
        self._check_boot(line)
        port = self.qmp.hostfwd_port(22)
        self.ssh = self._open_ssh(port)
        assert line is not None
        release = line.text.split(READY, 1)[1].strip()
        self.info = BootInfo(time.monotonic() - started, release, port, argv)
        wall, mono = self._boot_started
        TIMELINE.add(f"boot ({self.log_dir.name}): qemu to ssh", wall, time.monotonic() - mono,
                     cpu=self.cpu_seconds())

    def cpu_seconds(self) -> float:
        """Host CPU seconds this guest's QEMU has used so far (0 if it cannot be found)."""
        if self._qemu_pid is None and self.proc is not None:
            self._qemu_pid = find_qemu(self.proc.pid)
        return process_cpu(self._qemu_pid) if self._qemu_pid is not None else 0.0

    def _open_ssh(self, port: int) -> SshChannel:
        return SshChannel(port, self.key_path, on_timeout=self.raise_if_hung)

    @staticmethod
    def _wake_qmp_on_exit(proc: subprocess.Popen[bytes], qmp: QmpChannel) -> None:
        """QEMU gone before it connected: fail `accept()` now, not at its timeout."""
        proc.wait()
        qmp.interrupt_accept()

    def _failure(self, kind: type[MachineError], message: str, lines: int = 40) -> MachineError:
        """One boot-failure exception: QEMU's exit status (if it exited), argv, console tail."""
        assert self.proc is not None and self.console is not None
        status = self.proc.poll()
        if status is not None:
            self.console.join()  # everything QEMU printed before it went
        argv = qemu_argv(self.spec) if self.spec is not None else []
        return kind(message, self.console.tail(lines), status=status, argv=argv)

    def _qemu_gone(self) -> bool:
        return self.proc is not None and self.proc.poll() is not None

    def _check_boot(self, line: Any) -> None:
        if line is not None and READY in line.text:
            return
        if line is not None and MODULE_FAILED in line.text:
            raise self._failure(MachineError, "the iopt_hil module did not load in the guest")
        if line is not None:
            raise self._failure(GuestPanic, f"guest crashed while booting: {line.text}", 60)
        if self._qemu_gone():
            raise self._failure(QemuExited, "QEMU exited during boot")
        raise self._failure(BootTimeout, f"guest not ready within {self.boot_timeout:g} s")

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        """Quit QEMU (QMP, then SIGTERM, then SIGKILL) and remove every file of the run."""
        if self.ssh is not None:
            self.ssh.close()
        if self.qmp is not None:
            if self.alive:
                self.qmp.quit()
            self.qmp.close()
        if self.proc is not None:
            for sig in (None, signal.SIGTERM, signal.SIGKILL):
                if sig is not None and self.proc.poll() is None:
                    self.proc.send_signal(sig)
                try:
                    self.proc.wait(timeout=5)
                    break
                except subprocess.TimeoutExpired:
                    continue
        if self.console is not None:
            self.console.join()
        if self.memory is not None:
            self.memory.close()
        if self.spec is not None:
            remove_shared_ram(self.spec.shm_path)
        if self.rundir.exists():
            shutil.rmtree(self.rundir, ignore_errors=True)
        self.ssh, self.qmp, self.memory = None, None, None

    def barrier(self, timeout: float = 10.0) -> bool:
        """Write a token to /dev/kmsg and wait for it on the console: every kernel message
        printed before it is then in `self.console` (printk is ordered)."""
        if not self.alive or self.ssh is None or self.console is None:
            return False
        self._barriers += 1
        token = f"iopt-hil-barrier-{os.getpid()}-{self._barriers}"
        start = self.console.mark()
        if not self._write_kmsg(token, timeout):
            return False
        return self.console.wait_for(re.compile(re.escape(token)), timeout, start) is not None

    def _write_kmsg(self, token: str, timeout: float) -> bool:
        """The token goes through a guest shell kept open for it (one write, no new SSH
        channel: ~60 ms less per test under TCG); an exec of its own if that shell is gone."""
        assert self.ssh is not None
        line = f"echo {token} > /dev/kmsg\n".encode()
        try:
            if self._kmsg is None or self._kmsg.closed or self._kmsg.exit_status_ready():
                self._kmsg = self.ssh.transport().open_session(timeout=timeout)
                self._kmsg.exec_command("exec sh >/dev/null 2>&1")
            self._kmsg.sendall(line)
            return True
        except (paramiko.SSHException, OSError, ChannelError):
            self._kmsg = None
        try:
            self.ssh.run(f"echo {token} > /dev/kmsg", timeout=timeout)
        except (ChannelError, GuestHang):
            return False
        return True

    def hang_evidence(self, samples: int = 8, interval: float = 0.25, window: int = 256,
                      share: float = 0.75) -> str | None:
        """Evidence that the guest stopped making progress: no console output during the
        sampling, and every vCPU's program counter within one `window`-byte range in at least
        `share` of the samples (a CPU spinning with interrupts off never leaves it; an idle
        one sits in its idle loop but now and then wakes for a tick, which must not count)."""
        if not self.alive or self.qmp is None or self.console is None:
            return None
        started = time.monotonic()
        try:
            pcs = []
            for _ in range(samples):
                pcs.append(self.qmp.program_counters())
                time.sleep(interval)
        except ChannelError:
            return None
        last_output = self.console.last_output()
        quiet = time.monotonic() - last_output
        stuck = all(_mostly_within(cpu, window) >= share * len(cpu) for cpu in zip(*pcs))
        if not stuck or last_output >= started:  # the console spoke while we sampled
            return None
        idle = self._idle_ranges()
        if all(sum(map(idle.contains, cpu)) >= share * len(cpu) for cpu in zip(*pcs)):
            return None  # every vCPU waits in the idle loop: the guest is idle, not hung

        per_cpu = ", ".join(f"CPU{i}: {min(c):#x}..{max(c):#x}" for i, c in enumerate(zip(*pcs)))
        return (f"no console output for {quiet:.1f} s and every vCPU stuck over {samples} "
                f"samples {interval} s apart ({per_cpu})")

    def _idle_ranges(self) -> IdleRanges:
        return idle_ranges(self.build.vmlinux) if self.build.vmlinux.exists() else IdleRanges(())

    def raise_if_hung(self) -> None:
        """Called when a guest request missed its deadline: a hang, or merely slow?"""
        evidence = self.hang_evidence()
        if evidence is not None:
            assert self.console is not None
            raise GuestHang(f"guest hung: {evidence}", self.console.tail())

    def require_ssh(self) -> SshChannel:
        if self.ssh is None:
            raise ChannelError("the guest is not running")
        return self.ssh
