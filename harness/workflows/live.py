"""Named guests that stay up after the command that started them, for debugging by hand.

`iopt-hil shell --name N --detach` starts a guest server: a process in its own session that
boots the guest, records it in `<cache>/live/N/state.json` (0700 directory) and answers on a
Unix socket in the guest's private run directory (host walks of its tables, stop). QEMU dies
with that server however it dies, the run directory is swept once its owner is gone, so `ps`
can tell a dead guest from a live one and `stop` removes whatever is left.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..build.pipeline import Prepared
from ..build.toolchain import Bind
from ..errors import HarnessError, MachineError
from ..guest.machine import Machine, sweep_stale
from ..guest.modclient import ModuleClient
from ..pgtable.dump import dump
from ..pgtable.tables import GuestTable

NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")
START_TIMEOUT = 600.0  # a cold build happens before the server starts; this is boot only
MAX_MESSAGE = 1 << 26


@dataclass
class GuestState:
    """What `ps`, `ssh`, `walk` and `stop` know of a named guest."""

    name: str
    pid: int  # the guest server's
    status: str = "starting"  # starting, running, failed
    error: str = ""
    ssh_port: int = 0
    key: str = ""
    rundir: str = ""
    control: str = ""
    console_log: str = ""
    tree: str = ""
    build_key: str = ""
    release: str = ""
    gdb_port: int = 0  # QEMU's gdb stub (0: started without --gdb)
    vmlinux: str = ""
    module: str = ""
    started: float = field(default_factory=time.time)

    @property
    def alive(self) -> bool:
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True

    def ssh_argv(self) -> list[str]:
        return ["ssh", "-i", self.key, "-p", str(self.ssh_port), "-o", "StrictHostKeyChecking=no",
                "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR", "root@127.0.0.1"]


def check_name(name: str) -> str:
    if not NAME.fullmatch(name):
        raise HarnessError(f"guest name {name!r}: use a plain word (a-z, 0-9, '-', '_', "
                           "at most 32, starting with a letter or digit)")
    return name


def live_dir(cache: Path) -> Path:
    path = cache / "live"
    path.mkdir(mode=0o700, exist_ok=True)
    return path


def _home(cache: Path, name: str) -> Path:
    return live_dir(cache) / check_name(name)


def read_state(cache: Path, name: str) -> GuestState:
    path = _home(cache, name) / "state.json"
    try:
        return GuestState(**json.loads(path.read_text()))
    except FileNotFoundError:
        raise HarnessError(f"no guest named {name!r} (`iopt-hil ps` lists them)") from None
    except (ValueError, TypeError) as exc:
        raise HarnessError(f"{path} is unreadable ({exc}): `iopt-hil stop {name}` removes it") from None


def _write_state(home: Path, state: GuestState) -> None:
    tmp = home / "state.json.tmp"
    tmp.write_text(json.dumps(asdict(state), indent=1) + "\n")
    tmp.rename(home / "state.json")


def list_guests(cache: Path) -> list[GuestState]:
    out = []
    for home in sorted(live_dir(cache).iterdir()):
        if (home / "state.json").exists():
            try:
                out.append(read_state(cache, home.name))
            except HarnessError:
                continue
    return out


def status_of(state: GuestState) -> str:
    if not state.alive:
        return "dead" if state.status != "failed" else "failed"
    return state.status


def require_running(state: GuestState) -> GuestState:
    """The guest, if it is up; else an error saying what it is."""
    if status_of(state) != "running":
        raise HarnessError(f"guest {state.name!r} is {status_of(state)}")
    return state


# --- the CLI side ---------------------------------------------------------------------------

def check_free(cache: Path, name: str) -> None:
    """Refuse a name in use, before anything is built or booted."""
    home = _home(cache, name)
    if not home.exists():
        return
    try:
        state = read_state(cache, name)
    except HarnessError:
        raise HarnessError(f"{home} exists without a state: `iopt-hil stop {name}` removes it") from None
    raise HarnessError(f"a guest named {name!r} exists ({status_of(state)}): pick another name "
                       f"or `iopt-hil stop {name}`")


def start_detached(cache: Path, name: str, server_argv: list[str],
                   log: Callable[[str], None] = print) -> GuestState:
    """Spawn the guest server for `name` and wait until its guest answers SSH (or failed)."""
    home = _home(cache, name)
    try:
        home.mkdir(mode=0o700)  # exclusive: of two starts with one name, one wins
    except FileExistsError:
        check_free(cache, name)
        raise
    with open(home / "server.log", "wb") as out:
        server = subprocess.Popen(server_argv, stdin=subprocess.DEVNULL, stdout=out,
                                  stderr=subprocess.STDOUT, start_new_session=True)
    _write_state(home, GuestState(name, server.pid))
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        state = read_state(cache, name)
        if state.status == "running":
            return state
        if state.status == "failed" or server.poll() is not None:
            tail = (home / "server.log").read_text(errors="replace")[-3000:]
            raise MachineError(f"guest {name!r} did not start: {state.error or 'its server exited'}"
                               f" (`iopt-hil stop {name}` cleans up)", tail)
        time.sleep(0.2)
    raise MachineError(f"guest {name!r} not ready within {START_TIMEOUT:.0f} s "
                       f"(`iopt-hil stop {name}` cleans up)")


def call(state: GuestState, request: dict[str, Any], timeout: float = 120.0) -> dict[str, Any]:
    """One request to a guest server; its JSON answer."""
    require_running(state)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect(state.control)
            sock.sendall(json.dumps(request).encode() + b"\n")
            data = _read_line(sock)
        except OSError as exc:
            raise HarnessError(f"guest {state.name!r} does not answer: {exc}") from None
    answer: dict[str, Any] = json.loads(data)
    if "error" in answer:
        raise HarnessError(f"guest {state.name!r}: {answer['error']}")
    return answer


def _read_line(sock: socket.socket) -> bytes:
    chunks, size = [], 0
    while True:
        chunk = sock.recv(1 << 16)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
        if chunk.endswith(b"\n") or size > MAX_MESSAGE:
            break
    return b"".join(chunks)


def stop(cache: Path, name: str, log: Callable[[str], None] = print) -> None:
    """Shut the guest down (politely, then by force) and remove everything it made."""
    home = _home(cache, name)
    if not home.exists():
        raise HarnessError(f"no guest named {name!r} (`iopt-hil ps` lists them)")
    try:
        state: GuestState | None = read_state(cache, name)
    except HarnessError:
        state = None
    if state is not None and state.alive:
        try:
            call(state, {"op": "stop"}, timeout=30)
        except HarnessError:
            pass
        for sig in (None, signal.SIGTERM, signal.SIGKILL):
            if sig is not None and state.alive:
                os.kill(state.pid, sig)
            deadline = time.monotonic() + 15
            while state.alive and time.monotonic() < deadline:
                time.sleep(0.1)
            if not state.alive:
                break
    for stale in sweep_stale():  # the run directory of a server that died without cleaning up
        log(f"removed {stale}")
    shutil.rmtree(home, ignore_errors=True)


# --- the server side ------------------------------------------------------------------------

def serve(cache: Path, name: str, prepared: Prepared, gdb: bool = False) -> int:
    """Boot the guest and keep it until told to stop, or until QEMU dies."""
    home = _home(cache, name)
    state = read_state(cache, name)
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    machine = Machine(prepared.build, prepared.root, log_dir=home, gdb=gdb,
                      progress=lambda msg: print(msg, flush=True))
    try:
        machine.start()
    except Exception as exc:  # noqa: BLE001 -- whatever it was, the CLI must hear it
        state.status, state.error = "failed", (str(exc).splitlines() or [type(exc).__name__])[0]
        _write_state(home, state)
        print(exc, flush=True)
        machine.stop()
        return 1
    assert machine.info is not None and machine.console is not None
    control = machine.rundir / "control.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(control))
    os.chmod(control, 0o600)
    server.listen(4)
    server.settimeout(0.5)
    state = GuestState(
        name, os.getpid(), "running", ssh_port=machine.info.ssh_port, key=str(machine.key_path),
        rundir=str(machine.rundir), control=str(control), console_log=str(machine.console.log_path),
        tree=prepared.build.identity.describe(), build_key=prepared.build.provenance()["build_key"],
        release=machine.info.release, gdb_port=machine.gdb_port,
        vmlinux=str(prepared.build.vmlinux), module=str(prepared.build.module), started=state.started)
    _write_state(home, state)
    try:
        while not stopping.is_set() and machine.alive:
            try:
                conn, _ = server.accept()
            except socket.timeout:
                continue
            with conn:
                _answer(conn, machine, stopping)
    finally:
        server.close()
        machine.stop()
    return 0


def _answer(conn: socket.socket, machine: Machine, stopping: threading.Event) -> None:
    conn.settimeout(120)
    try:
        request = json.loads(_read_line(conn) or b"{}")
        op = request.get("op")
        if op == "stop":
            stopping.set()
            answer: dict[str, Any] = {"ok": True}
        elif op == "walk":
            answer = {"tables": walk_tables(machine, request.get("id"))}
        else:
            answer = {"error": f"unknown request {op!r}"}
    except (HarnessError, ValueError, OSError) as exc:
        answer = {"error": str(exc)}
    try:
        conn.sendall(json.dumps(answer).encode() + b"\n")
    except OSError:
        pass


def walk_tables(machine: Machine, table_id: int | None) -> list[dict[str, Any]]:
    """The module's tables (or one), each walked from guest memory while the vCPUs stop."""
    assert machine.qmp is not None and machine.memory is not None
    client = ModuleClient(machine.require_ssh(), timeout=30)
    try:
        ids = client.list()
        if table_id is not None:
            if int(table_id) not in ids:
                raise HarnessError(f"the module holds no table {table_id} (it holds {ids or 'none'})")
            ids = [int(table_id)]
        out = []
        for tid in ids:
            info = client.info(tid)
            table = GuestTable(client, info, machine.memory, machine.qmp)
            out.append(dump(tid, info.oas, table.walk()).as_json())
        return out
    finally:
        client.close()


MODULE_SECTIONS = (".text", ".data", ".bss", ".rodata")


def gdb_argv(state: GuestState, extra: list[str]) -> tuple[list[str], list[Bind]]:
    """gdb-multiarch attached to the guest's stub, with vmlinux (and the kernel's gdb helpers
    beside it) and our module's symbols at the addresses the guest loaded it at."""
    from ..guest.ssh import SshChannel

    ssh = SshChannel(state.ssh_port, Path(state.key))
    try:
        script = "; ".join(f"echo {s} $(cat /sys/module/iopt_hil/sections/{s} 2>/dev/null)"
                           for s in MODULE_SECTIONS)
        out = ssh.run(script, timeout=30).stdout
    finally:
        ssh.close()
    addrs = dict(line.split() for line in out.splitlines() if len(line.split()) == 2)
    if ".text" not in addrs:
        raise HarnessError("the guest does not show where iopt_hil is loaded "
                           "(/sys/module/iopt_hil/sections)")
    vmlinux, module = Path(state.vmlinux), Path(state.module)
    sections = " ".join(f"-s {s} {addrs[s]}" for s in MODULE_SECTIONS[1:] if s in addrs)
    argv = ["gdb-multiarch", "-q", "-nx",
            "-iex", f"add-auto-load-safe-path {vmlinux.parent}",
            "-iex", "set pagination off", "-iex", "set confirm off",
            str(vmlinux),
            "-ex", f"target remote 127.0.0.1:{state.gdb_port}",
            "-ex", f"add-symbol-file {module} {addrs['.text']} {sections}".strip(),
            *extra]
    binds = [Bind(vmlinux.parent, readonly=True), Bind(module.parent, readonly=True)]
    helpers = vmlinux.parent / "vmlinux-gdb.py"  # links into the tree's scripts/gdb
    if helpers.is_symlink():
        binds.append(Bind(helpers.resolve().parents[2], readonly=True))
    return argv, binds
