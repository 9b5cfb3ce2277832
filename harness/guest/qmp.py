"""QMP: control and guest-physical memory through `qemu.qmp`'s synchronous client.

One client per socket (a second one on the same socket hangs): the Machine owns this object and
everything else borrows it. Calls are serialized by a lock so fixtures and threads can share it.
"""
from __future__ import annotations

import re
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from qemu.qmp import QMPError
from qemu.qmp.legacy import QEMUMonitorProtocol

from ..errors import ChannelError


class QmpChannel:
    def __init__(self, socket: Path, timeout: float = 10.0) -> None:
        self.socket = socket
        self._lock = threading.Lock()
        self._client = QEMUMonitorProtocol(str(socket))
        deadline = time.monotonic() + timeout
        while True:
            try:
                self._client.connect()
                break
            except (OSError, QMPError) as exc:
                if time.monotonic() > deadline:
                    raise ChannelError(f"QMP socket {socket} did not answer: {exc}") from exc
                self._client = QEMUMonitorProtocol(str(socket))
                time.sleep(0.05)
        self._client.settimeout(timeout)

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
