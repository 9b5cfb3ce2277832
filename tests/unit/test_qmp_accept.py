"""The QMP handshake the way qemu.machine does it, against a fake QEMU: the harness listens first,
the peer connects; a peer that never comes (QEMU died) fails accept at once, not at its timeout."""
from __future__ import annotations

import json
import socket
import threading
import time

import pytest

from harness.errors import ChannelError, QemuExited
from harness.guest.qmp import QmpChannel

GREETING = {"QMP": {"version": {"qemu": {"major": 10, "minor": 0, "micro": 2}, "package": ""},
                    "capabilities": []}}


def _read_message(s: socket.socket) -> dict:
    """One JSON message (the client sends no newline after it)."""
    buf = b""
    while True:
        chunk = s.recv(4096)
        if not chunk:
            return {}
        buf += chunk
        try:
            return dict(json.loads(buf))
        except ValueError:
            continue


def _fake_qemu(path: str) -> None:
    """Connect as `-qmp unix:PATH` does, greet, answer qmp_capabilities and one query-status."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.connect(path)
        s.sendall(json.dumps(GREETING).encode() + b"\r\n")
        for reply in ({}, {"status": "running", "running": True}):
            request = _read_message(s)
            s.sendall(json.dumps({"return": reply, "id": request.get("id")}).encode() + b"\r\n")
        _read_message(s)  # until the client hangs up


def test_listen_then_accept_a_connecting_qemu(tmp_path):
    path = tmp_path / "qmp.sock"
    qmp = QmpChannel(path)
    assert path.is_socket(), "bound at construction, before QEMU starts"
    peer = threading.Thread(target=_fake_qemu, args=(str(path),), daemon=True)
    peer.start()
    try:
        qmp.accept(5)
        assert qmp.status() == "running"
    finally:
        qmp.close()
    peer.join(5)


def test_interrupt_fails_a_pending_accept_at_once(tmp_path):
    qmp = QmpChannel(tmp_path / "qmp.sock")
    threading.Timer(0.2, qmp.interrupt_accept).start()
    started = time.monotonic()
    with pytest.raises(ChannelError):
        qmp.accept(20)
    assert time.monotonic() - started < 5
    qmp.interrupt_accept()  # after accept returned: harmless
    qmp.close()


def test_machine_error_carries_status_argv_and_tail():
    err = QemuExited("QEMU exited during boot", "qemu: bad option", status=1,
                     argv=["qemu-system-aarch64", "-M", "virt"])
    assert (err.status, err.argv, err.console_tail) == (1, ["qemu-system-aarch64", "-M", "virt"],
                                                        "qemu: bad option")
    text = str(err)
    assert text.splitlines()[0] == "QEMU exited during boot"
    assert "QEMU exit status: 1" in text and "qemu-system-aarch64 -M virt" in text
    assert text.endswith("--- console tail ---\nqemu: bad option")
