"""QMP: control and guest-physical memory through `qemu.qmp`'s synchronous client.

The harness is the QMP server, the way `qemu.machine` does it: `QmpChannel(path)` binds and
listens before QEMU starts, QEMU is launched with `-qmp unix:PATH` (a client) and `accept()`
takes its connection. No polling for a socket QEMU may not have made yet, no reconnect loop.

One client per socket: the Machine owns this object and everything else borrows it. Calls are
serialized by a lock so fixtures and threads can share it.
"""
from __future__ import annotations

import re
import socket
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from qemu.qmp import QMPError
from qemu.qmp.legacy import QEMUMonitorProtocol

from ..errors import ChannelError


class QmpChannel:
    def __init__(self, path: Path, timeout: float = 10.0) -> None:
        """Listen on `path` (bound here, before QEMU runs); `accept()` completes the session."""
        self.socket = path
        self.timeout = timeout
        self._lock = threading.Lock()
        self._accepted = threading.Event()
        try:
            self._client = QEMUMonitorProtocol(str(path), server=True)
        except (OSError, QMPError) as exc:
            raise ChannelError(f"cannot listen for QMP on {path}: {exc}") from exc

    def accept(self, timeout: float) -> None:
        """Wait for QEMU to connect and negotiate; ChannelError if it does not in `timeout`
        s or if `interrupt_accept()` was called (QEMU exited before connecting)."""
        try:
            self._client.accept(timeout)
        except (OSError, QMPError, EOFError, TimeoutError) as exc:
            raise ChannelError(f"QEMU did not open a QMP session on {self.socket} "
                               f"within {timeout:.0f} s: {exc or type(exc).__name__}") from exc
        finally:
            self._accepted.set()
        self._client.settimeout(self.timeout)

    def interrupt_accept(self) -> None:
        """Wake a pending `accept()` from another thread: a throwaway peer connects and hangs
        up at once, so accept fails now instead of at its timeout. No effect once accepted."""
        if self._accepted.is_set():
            return
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as peer:
            try:
                peer.connect(str(self.socket))
            except OSError:
                pass  # nobody listening any more: accept already returned

    def cmd(self, name: str, **args: Any) -> Any:
        with self._lock:
            try:
                return self._client.cmd(name, **args)
            except (OSError, QMPError) as exc:
                raise ChannelError(f"QMP {name} {args} failed: {exc}") from exc

    def hmp(self, command: str) -> str:
        """A human-monitor command (some facts, like the hostfwd port, are only there)."""
        out: str = self.cmd("human-monitor-command", **{"command-line": command})
        return out

    def hostfwd_port(self, guest_port: int = 22) -> int:
        """The host port QEMU picked for `hostfwd=tcp:127.0.0.1:0-:guest_port`."""
        table = self.hmp("info usernet")
        for line in table.splitlines():
            m = re.search(r"TCP\[HOST_FORWARD\]\s+\d+\s+127\.0\.0\.1\s+(\d+)\s+\S+\s+(\d+)", line)
            if m and int(m.group(2)) == guest_port:
                return int(m.group(1))
        raise ChannelError(f"no host forward to guest port {guest_port} in:\n{table}")

    def pmemsave(self, addr: int, size: int, path: Path) -> bytes:
        """Guest-physical bytes through a file QEMU writes (the portable, slower path)."""
        self.cmd("pmemsave", val=addr, size=size, filename=str(path))
        try:
            return path.read_bytes()
        finally:
            path.unlink(missing_ok=True)

    def read_register(self, addr: int, width: int) -> int:
        """One device register at guest-physical `addr`, read at its own width (4 or 8 bytes):
        MMIO answers only at register width (a wider read silently returns zeros)."""
        fmt = {4: "w", 8: "g"}[width]
        out = self.hmp(f"xp /1{fmt}x {addr:#x}")
        m = re.search(r":\s*0x([0-9a-fA-F]+)", out)
        if not m:
            raise ChannelError(f"unexpected xp output for {addr:#x}: {out!r}")
        return int(m.group(1), 16)

    def pci_devices(self) -> list[dict[str, Any]]:
        """Every PCI device QEMU has, bus by bus (QMP query-pci)."""
        return [dev for bus in self.cmd("query-pci") for dev in bus.get("devices", [])]

    def status(self) -> str:
        result: dict[str, Any] = self.cmd("query-status")
        return str(result.get("status"))

    @contextmanager
    def paused(self) -> Iterator[None]:
        """Stop the vCPUs for a consistent snapshot of guest memory (~1 ms)."""
        was_running = self.status() == "running"
        if was_running:
            self.cmd("stop")
        try:
            yield
        finally:
            if was_running:
                self.cmd("cont")

    def program_counters(self) -> list[int]:
        """Each vCPU's PC, read through HMP `info registers` (hang detection)."""
        out = self.hmp("info registers -a")
        return [int(pc, 16) for pc in re.findall(r"PC=([0-9a-fA-F]+)", out)]

    def quit(self) -> None:
        with self._lock:
            try:
                self._client.cmd("quit")
            except (OSError, QMPError, EOFError):
                pass

    def close(self) -> None:
        with self._lock:
            try:
                self._client.close()
            except Exception:  # closing a dead socket: nothing left to tell anyone
                pass
