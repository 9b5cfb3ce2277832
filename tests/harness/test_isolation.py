"""What a guest can reach: nothing on the host and nothing beyond. User-mode networking with
restrict=on leaves the forwarded SSH port as the only way in or out."""
from __future__ import annotations

import socket
import threading
from urllib.parse import urlunsplit

import pytest

pytestmark = pytest.mark.guest


def _outward_address() -> str | None:
    """This host's own address on its default route (no packet is sent), if it has one."""
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.connect(("192.0.2.1", 9))  # TEST-NET-1: only picks the route
        address = probe.getsockname()[0]
        return None if address.startswith("127.") else address
    except OSError:
        return None
    finally:
        probe.close()


class Listener:
    """A TCP listener on `address` that records every connection it accepts."""

    def __init__(self, address: str) -> None:
        self.sock = socket.socket()
        self.sock.bind((address, 0))
        self.sock.listen(4)
        self.sock.settimeout(0.5)
        self.port = self.sock.getsockname()[1]
        self.accepted: list[object] = []
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._done.is_set():
            try:
                self.accepted.append(self.sock.accept()[0])
            except OSError:
                continue

    def close(self) -> None:
        self._done.set()
        self._thread.join(2)
        self.sock.close()


def test_the_guest_cannot_reach_the_hosts_loopback_or_beyond(ssh):
    loopback = Listener("127.0.0.1")
    outward_address = _outward_address()
    outward = Listener(outward_address) if outward_address else None
    # 10.0.2.2 is slirp's alias of the host's loopback, 10.0.2.3 its DNS alias; the host's own
    # outward address stands for "beyond": without restrict=on slirp connects the guest to it
    targets = [("10.0.2.2", loopback.port), ("10.0.2.3", loopback.port)]
    if outward is not None:
        targets.append((outward_address, outward.port))
    try:
        for target, port in targets:
            url = urlunsplit(("http", f"{target}:{port}", "/", "", ""))
            result = ssh.run(f"wget -T 3 -q -O /dev/null {url}; echo rc=$?", timeout=30)
            assert "rc=0" not in result.stdout, (target, result.stdout, result.stderr)
    finally:
        loopback.close()
        if outward is not None:
            outward.close()
    assert not loopback.accepted, "the guest reached a service on the host's 127.0.0.1"
    assert outward is None or not outward.accepted, \
        f"the guest reached {outward_address}, beyond the host's loopback"
