"""What a guest can reach: nothing on the host and nothing beyond. User-mode networking with
restrict=on leaves the forwarded SSH port as the only way in or out."""
from __future__ import annotations

import socket
import threading
from urllib.parse import urlunsplit

import pytest

pytestmark = pytest.mark.guest


def test_the_guest_cannot_reach_the_hosts_loopback(ssh):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    listener.settimeout(0.5)
    port = listener.getsockname()[1]
    accepted: list[object] = []
    done = threading.Event()

    def accept() -> None:
        while not done.is_set():
            try:
                accepted.append(listener.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        # 10.0.2.2 is slirp's alias of the host's loopback; the others are the DNS alias and a
        # public-range address standing for "beyond".
        for target in ("10.0.2.2", "10.0.2.3"):
            url = urlunsplit(("http", f"{target}:{port}", "/", "", ""))
            result = ssh.run(f"wget -T 3 -q -O /dev/null {url}; echo rc=$?", timeout=30)
            assert "rc=0" not in result.stdout, (target, result.stdout, result.stderr)
    finally:
        done.set()
        thread.join(2)
        listener.close()
    assert not accepted, "the guest reached a service on the host's 127.0.0.1"
