"""What the guest prints is untrusted: console lines are bounded, the classifier stays linear on
hostile lines, and a malformed module reply is a ModuleError, never a bare exception."""
from __future__ import annotations

import io
import time
from pathlib import Path

import pytest

from harness.errors import ModuleError
from harness.guest import console as console_mod
from harness.guest.console import Console
from harness.guest.modclient import parse_reply
from harness.guest.splats import classify, kind_of


def test_an_over_long_console_line_is_cut_and_the_next_one_kept(tmp_path: Path) -> None:
    stream = io.BytesIO(b"A" * (5 * console_mod.MAX_LINE) + b"\nnext line\n")
    con = Console(stream, tmp_path / "console.log")
    con.join(5)
    texts = [line.text for line in con.since(0)]
    assert len(texts) == 2
    assert texts[0].endswith("[line cut by iopt-hil]") and len(texts[0]) < console_mod.MAX_LINE + 40
    assert texts[1] == "next line"


def test_the_number_of_kept_lines_is_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(console_mod, "MAX_LINES", 100)
    con = Console(io.BytesIO(b"x\n" * 1000), tmp_path / "console.log")
    con.join(5)
    assert len(con.since(0)) == 100
    assert (tmp_path / "console.log").read_text().count("x") == 1000


@pytest.mark.parametrize("body", ["a at " * 20000, "a" * 50000 + " at " + "b" * 50000, "x at +0x" * 12000])
def test_warning_pattern_is_linear_on_hostile_lines(body: str) -> None:
    started = time.perf_counter()
    kind_of("[    1.000000] WARNING: " + body)
    assert time.perf_counter() - started < 0.05


def test_both_warning_forms_still_classify() -> None:
    assert kind_of("[ 1.0] WARNING: CPU: 0 PID: 1 at drivers/iommu/io-pgtable-arm.c:400 x+0x10/0x20") == "warning"
    assert kind_of("[ 1.0] WARNING: iopt_hil.rs:678 at _RNvXs0_x+0x1204/0x2038 [iopt_hil], CPU#1: sh/58") == "warning"
    assert classify(["WARNING: possible circular locking dependency detected"])[0].kind == "lockdep"


@pytest.mark.parametrize("line", ['0 map ret=0 why="unterminated', "0 map ret=zero", "", "x" * 10])
def test_malformed_replies_are_module_errors(line: str) -> None:
    with pytest.raises(ModuleError, match="outside the grammar"):
        parse_reply(line)


# Every pattern of the classifier, reached through the literal start of its report, then 100 KB of
# filler built to provoke backtracking (spaces, "at", "/digits", word runs, '=' runs).
_PREFIXES = [
    "WARNING: ", "WARNING: at ", "WARNING: CPU: 0 PID: 1 at ", "BUG: ", "BUG: using ", "BUG: key ",
    "INFO: task ", "INFO: rcu_", "rcu: INFO: ", "kmemleak: ", "kmemleak: unreferenced object ",
    "ODEBUG: ", "ODEBUG: free ", "ODEBUG: object ", "refcount_t: ", "list_add corruption. ",
    "watchdog: BUG: soft lockup - CPU#1 stuck for ", "watchdog: CPU0: ", "NMI watchdog: ",
    "UBSAN: ", "Kernel panic - not syncing: ", "arm-smmu-v3 ", "DEBUG_LOCKS_WARN_ON(", "",
]
_FILLERS = ["a at " * 20000, "x" * 100000, "ab/12 " * 16667, "w " * 50000, "=" * 100000,
            "a" * 50000 + " at " + "b" * 50000, "x at +0x" * 12500, "a-safe -> " * 10000]


@pytest.mark.parametrize("prefix", _PREFIXES)
def test_every_pattern_is_linear_on_hostile_lines(prefix: str) -> None:
    for filler in _FILLERS:
        line = "[    1.000000] [    T1] " + prefix + filler
        started = time.perf_counter()
        kind_of(line)
        assert time.perf_counter() - started < 0.05, (prefix, filler[:12])


def test_classify_is_linear_on_hostile_headers_and_bodies() -> None:
    # banner / cut-here look-back, kmemleak body and end markers, each on a 100 KB line
    lines = ["=" * 100000, "------------[ cut here ]------------" + "-" * 100000,
             "kmemleak: unreferenced object 0x1 (size 8):", "kmemleak:  " + " " * 100000,
             "BUG: KASAN: x in y+0x1/0x2", "=" * 100000 + " " * 100, "---[ end trace " + "0" * 100000]
    started = time.perf_counter()
    splats = classify(lines)
    assert time.perf_counter() - started < 0.05
    assert [s.kind for s in splats] == ["kmemleak", "kasan"]


class _FloodChannel:
    """A guest shell (or command) that answers anything with `chunk`, forever."""

    def __init__(self, chunk: bytes) -> None:
        self.chunk, self.closed, self.sent = chunk, False, 0

    def settimeout(self, _t: float) -> None: ...
    def exec_command(self, _c: str) -> None: ...
    def sendall(self, _d: bytes) -> None: ...
    def shutdown_write(self) -> None: ...

    def recv(self, _n: int) -> bytes:
        self.sent += len(self.chunk)
        return self.chunk

    def recv_ready(self) -> bool:
        return True

    def close(self) -> None:
        self.closed = True


class _Transport:
    def __init__(self, chan: _FloodChannel) -> None:
        self.chan = chan

    def open_session(self, timeout: float) -> _FloodChannel:
        return self.chan


def _ssh(chan: _FloodChannel):
    from harness.guest.ssh import SshChannel

    ssh = SshChannel.__new__(SshChannel)  # no connection: the channel is the guest
    ssh.on_timeout = None
    ssh.transport = lambda: _Transport(chan)  # type: ignore[method-assign]
    return ssh


def test_a_module_reply_line_without_end_is_cut_off(monkeypatch: pytest.MonkeyPatch) -> None:
    from harness.guest import modclient

    monkeypatch.setattr(modclient, "MAX_LINE", 4096)
    chan = _FloodChannel(b"x" * 1000)  # never a newline
    client = modclient.ModuleClient(_ssh(chan), timeout=30)
    with pytest.raises(ModuleError, match="longer than 4096 bytes"):
        client.shell("cat /sys/kernel/debug/iopt_hil/request")
    assert chan.sent < 8192, "it stopped reading at the bound, not at the deadline"


def test_too_many_reply_lines_for_one_call_are_cut_off(monkeypatch: pytest.MonkeyPatch) -> None:
    from harness.guest import modclient

    monkeypatch.setattr(modclient, "MAX_LINES", 500)
    chan = _FloodChannel(b"0 map ret=0\n" * 100)
    client = modclient.ModuleClient(_ssh(chan), timeout=30)
    with pytest.raises(ModuleError, match="more than 500 lines"):
        client.shell("true")
    assert chan.sent < 100 * 12 * 7


def test_a_guest_command_flooding_its_output_is_cut_off(monkeypatch: pytest.MonkeyPatch) -> None:
    from harness.errors import ChannelError
    from harness.guest import ssh as ssh_mod

    monkeypatch.setattr(ssh_mod, "MAX_OUTPUT", 1 << 16)
    chan = _FloodChannel(b"y" * 4096)
    with pytest.raises(ChannelError, match="sent more than 65536 bytes"):
        _ssh(chan).run("yes", timeout=30)
    assert chan.closed and chan.sent <= (1 << 16) + 4096
