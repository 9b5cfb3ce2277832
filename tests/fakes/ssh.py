"""A fake SSH to the guest: the `SshChannel` surface (`run`, `put`, `transport`, `close`) and a
paramiko-like session channel whose `sh` understands what `ModuleClient` and `Machine.barrier`
write: `echo` (with `$?`), `;`, redirections to the module's ctl file, /dev/kmsg or a scratch
file, the `while IFS= read -r l; do echo "$l"; done < FILE` loop that reads replies back, and
the `( echo ... > CTL; ...; exec cat CTL )` subshell that reads bulky ones.
Anything else fails like an unknown command (status 127), so a client change that needs more
of the shell shows up here instead of passing silently.

Replies are kept per shell (the real module keeps them per writing process). When the guest
stalls (`GuestSide.stalled`) a shell stops answering; when it dies (`drop()`) every channel
reads EOF and writes fail.
"""
from __future__ import annotations

import shlex
import socket
import threading
import time
from typing import Protocol

from harness.errors import ChannelError
from harness.guest.initramfs import DEBUGFS_CTL
from harness.guest.ssh import CommandResult

from .module import FakeModule

READ_LOOP = ["IFS=", "read", "-r", "l", ";", "do", "echo", "$l", ";"]


class GuestSide(Protocol):
    module: FakeModule
    stalled: bool

    @property
    def alive(self) -> bool: ...

    def kmsg(self, text: str) -> None: ...


def logical_lines(buf: str) -> tuple[list[str], str]:
    """Complete command lines in `buf` (newlines inside quotes do not end one) and the rest."""
    lines, start, quote, i = [], 0, "", 0
    while i < len(buf):
        c = buf[i]
        if quote:
            if c == quote:
                quote = ""
            elif c == "\\" and quote == '"':
                i += 1
        elif c in "'\"":
            quote = c
        elif c == "\\":
            i += 1
        elif c == "\n":
            lines.append(buf[start:i])
            start = i + 1
        i += 1
    return lines, buf[start:]


class FakeShell:
    """One guest `sh` process."""

    def __init__(self, guest: GuestSide, files: dict[str, str]) -> None:
        self.guest, self.files = guest, files
        self.status = 0
        self.replies: list[str] = []
        self.out: list[str] = []
        self.err: list[str] = []
        self.commands: list[list[str]] = []  # every simple command run, for assertions

    def run_line(self, line: str) -> None:
        lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        # shlex joins adjacent punctuation (`);`): split it back into one token per character
        tokens = [c for t in lexer for c in ([*t] if t and set(t) <= set("();") else [t])]
        self._run_tokens(tokens)

    def _run_tokens(self, tokens: list[str]) -> None:
        while tokens and not self.stuck:
            if tokens[0] == "(":  # a subshell: the same process here (replies are per shell)
                end = len(tokens) - 1 - tokens[::-1].index(")")
                self._run_tokens(tokens[1:end])
                tokens = tokens[end + 1:]
            elif tokens[0] == "while":
                end = tokens.index("done")
                body, tokens = tokens[1:end], tokens[end + 1:]
                source = None
                if tokens[:1] == ["<"]:
                    source, tokens = tokens[1], tokens[2:]
                self._read_loop(body, source)
            else:
                end = tokens.index(";") if ";" in tokens else len(tokens)
                self._simple(tokens[:end])
                tokens = tokens[end:]
            if tokens[:1] == [";"]:
                tokens = tokens[1:]

    @property
    def stuck(self) -> bool:
        """A stalled guest runs nothing more; a dead one neither."""
        return self.guest.stalled or not self.guest.alive

    def _read_loop(self, body: list[str], source: str | None) -> None:
        if body != READ_LOOP or source is None:
            self._fail(f"fake sh: unsupported loop: while {' '.join(body)}", 2)
            return
        if source == DEBUGFS_CTL:
            lines, self.replies = self.replies, []
        else:
            lines = self.files.get(source, "").splitlines()
        self.out += lines
        self.status = 0

    def _simple(self, words: list[str]) -> None:
        self.commands.append(words)
        target = None
        if ">" in words:
            at = words.index(">")
            words, target = words[:at], words[at + 1]
        words = [w.replace("$?", str(self.status)) for w in words]
        if words[:1] == ["echo"]:
            self._write(" ".join(words[1:]), target)
        elif words[:2] == ["exec", "cat"] and len(words) == 3:
            self._read_loop(READ_LOOP, words[2])  # what `cat` passes on, line by line
        elif words in (["true"], ["false"]):
            self.status = int(words == ["false"])
        else:
            self._fail(f"sh: {words[0] if words else ''}: not found", 127)

    def _write(self, text: str, target: str | None) -> None:
        self.status = 0
        if target is None:
            self.out.append(text)
        elif target == DEBUGFS_CTL:
            ok, self.replies = self.guest.module.run_batch(text + "\n")
            if not ok:
                self._fail("sh: write error: Invalid argument", 1)
        elif target == "/dev/kmsg":
            self.guest.kmsg(text)
        else:
            self.files[target] = text + "\n"

    def _fail(self, message: str, status: int) -> None:
        self.err.append(message)
        self.status = status


class FakeChannel:
    """The part of `paramiko.Channel` a `ModuleClient` uses."""

    def __init__(self, guest: GuestSide, files: dict[str, str]) -> None:
        self.shell = FakeShell(guest, files)
        self.guest = guest
        self.timeout: float | None = None
        self.written: list[bytes] = []  # each sendall(), as the client wrote it
        self.closed = False
        self._pending = ""
        self._out = b""
        self._cond = threading.Condition()

    def settimeout(self, timeout: float | None) -> None:
        self.timeout = timeout

    def exec_command(self, command: str) -> None:
        if command != "sh":
            raise ChannelError(f"fake channel runs only `sh`, not {command!r}")

    def sendall(self, data: bytes) -> None:
        if self.closed:
            raise OSError("Socket is closed")
        self.written.append(data)
        lines, self._pending = logical_lines(self._pending + data.decode())
        for line in lines:
            if self.shell.stuck:
                break
            before = len(self.shell.out)
            self.shell.run_line(line)
            self._emit(self.shell.out[before:])

    def _emit(self, lines: list[str]) -> None:
        if lines and not self.closed:
            with self._cond:
                self._out += "".join(f"{ln}\n" for ln in lines).encode()
                self._cond.notify_all()

    def recv(self, size: int) -> bytes:
        deadline = None if self.timeout is None else time.monotonic() + self.timeout
        with self._cond:
            while not self._out and not self.closed:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise socket.timeout("timed out")
                self._cond.wait(left)
            data, self._out = self._out[:size], self._out[size:]
            return data

    def close(self) -> None:
        with self._cond:
            self.closed = True
            self._cond.notify_all()


class FakeTransport:
    def __init__(self, ssh: "FakeSsh") -> None:
        self.ssh = ssh

    def open_session(self, timeout: float | None = None) -> FakeChannel:
        chan = FakeChannel(self.ssh.guest, self.ssh.files)
        self.ssh.channels.append(chan)
        return chan

    def is_active(self) -> bool:
        return not self.ssh.dropped


class FakeSsh:
    """`SshChannel` to a fake guest. `run` executes in a fresh shell, like one SSH exec."""

    def __init__(self, guest: GuestSide, port: int = 2222) -> None:
        self.guest, self.port = guest, port
        self.files: dict[str, str] = {}  # the guest's scratch files, shared by every shell
        self.channels: list[FakeChannel] = []
        self.runs: list[str] = []
        self.dropped = False

    def transport(self) -> FakeTransport:
        if self.dropped:
            raise ChannelError("SSH transport is closed")
        return FakeTransport(self)

    def run(self, command: str, timeout: float = 60.0, stdin: bytes | None = None) -> CommandResult:
        if self.dropped:
            raise ChannelError(f"SSH command {command!r} failed: transport closed")
        if self.guest.stalled:
            time.sleep(timeout)
            raise ChannelError(f"SSH command {command!r} failed: timed out")
        self.runs.append(command)
        shell = FakeShell(self.guest, self.files)
        for line in logical_lines(command + "\n")[0]:
            shell.run_line(line)
        return CommandResult(command, shell.status, "".join(f"{ln}\n" for ln in shell.out),
                             "".join(f"{ln}\n" for ln in shell.err))

    def put(self, data: bytes, path: str, mode: int = 0o644) -> None:
        self.files[path] = data.decode(errors="replace")

    def drop(self) -> None:
        """The guest died: every channel reads EOF."""
        self.dropped = True
        for chan in self.channels:
            chan.close()

    def close(self) -> None:
        self.drop()

    def command_line(self) -> str:
        return f"ssh -p {self.port} root@127.0.0.1 (fake)"
