"""SSH to the guest through paramiko: per-run key, 127.0.0.1 only, no host-key trust stored."""
from __future__ import annotations

import shlex
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import paramiko
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from ..errors import ChannelError


@dataclass(frozen=True)
class CommandResult:
    command: str
    status: int
    stdout: str
    stderr: str

    def check(self) -> "CommandResult":
        if self.status != 0:
            raise ChannelError(f"guest command failed ({self.status}): {self.command}\n"
                               f"{self.stderr or self.stdout}")
        return self


def make_key(path: Path) -> str:
    """A fresh ed25519 key for one run, written 0600; returns the OpenSSH public key line."""
    private = ed25519.Ed25519PrivateKey.generate()
    pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                serialization.NoEncryption())
    path.touch(mode=0o600)
    path.write_bytes(pem)
    pub = private.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                             serialization.PublicFormat.OpenSSH)
    return pub.decode() + " iopt-hil\n"


MAX_OUTPUT = 64 << 20  # bytes one guest command may send back (its output is untrusted)


class SshChannel:
    def __init__(self, port: int, key_path: Path, timeout: float = 30.0,
                 on_timeout: Callable[[], None] | None = None) -> None:
        """`on_timeout` runs when a command misses its deadline (the machine's hang check)."""
        self.port = port
        self.key_path = key_path
        self.on_timeout = on_timeout
        self.client = paramiko.SSHClient()
        self.client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
        deadline = time.monotonic() + timeout
        key = paramiko.Ed25519Key.from_private_key_file(str(key_path))
        while True:
            try:
                self.client.connect("127.0.0.1", port=port, username="root", pkey=key,
                                    allow_agent=False, look_for_keys=False, timeout=5,
                                    banner_timeout=10, auth_timeout=10)
                break
            except (paramiko.SSHException, OSError, EOFError) as exc:
                if time.monotonic() > deadline:
                    raise ChannelError(f"SSH to 127.0.0.1:{port} failed: {exc}") from exc
                time.sleep(0.2)

    def run(self, command: str, timeout: float = 60.0, stdin: bytes | None = None) -> CommandResult:
        """Run one command; past `timeout` the channel is closed, `on_timeout` decides whether
        the guest hung (GuestHang) and otherwise a ChannelError says the command overran."""
        deadline = time.monotonic() + timeout
        try:
            chan = self.transport().open_session(timeout=10)
            chan.settimeout(timeout)
            chan.exec_command(command)
            if stdin is not None:
                chan.sendall(stdin)
            chan.shutdown_write()
            out, err = bytearray(), bytearray()
            while True:
                if time.monotonic() > deadline:
                    chan.close()
                    if self.on_timeout is not None:
                        self.on_timeout()
                    raise ChannelError(f"SSH command {command!r} did not finish within {timeout:g} s")
                if len(out) + len(err) > MAX_OUTPUT:
                    chan.close()
                    raise ChannelError(f"SSH command {command!r} sent more than {MAX_OUTPUT} bytes")
                if chan.recv_ready():
                    out += chan.recv(65536)
                elif chan.recv_stderr_ready():
                    err += chan.recv_stderr(65536)
                elif chan.exit_status_ready() and not chan.recv_ready() and not chan.recv_stderr_ready():
                    break
                else:
                    time.sleep(0.002)
            status = chan.recv_exit_status()
            chan.close()
        except (paramiko.SSHException, OSError, socket.timeout) as exc:
            raise ChannelError(f"SSH command {command!r} failed: {exc}") from exc
        return CommandResult(command, status, out.decode(errors="replace"), err.decode(errors="replace"))

    def put(self, data: bytes, path: str, mode: int = 0o644) -> None:
        """dropbear has no sftp: stream the bytes into `cat`."""
        self.run(f"cat > {shlex.quote(path)} && chmod {mode:o} {shlex.quote(path)}",
                 stdin=data).check()

    def transport(self) -> paramiko.Transport:
        transport = self.client.get_transport()
        if transport is None or not transport.is_active():
            raise ChannelError("SSH transport is closed")
        return transport

    def close(self) -> None:
        self.client.close()

    def command_line(self) -> str:
        """The equivalent OpenSSH command, for a person to paste."""
        return (f"ssh -i {self.key_path} -p {self.port} -o StrictHostKeyChecking=no "
                f"-o UserKnownHostsFile=/dev/null root@127.0.0.1")
