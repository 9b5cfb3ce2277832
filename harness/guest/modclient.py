"""Client for the guest module's debugfs grammar (see images/module/iopt_hil.rs).

One long-lived `sh` per client on its own SSH channel: a batch is written with the shell's builtin
`echo` (one write(), so one batch) and the replies are read back with the builtin `read`, so the
writer and the reader are the same guest process, which is how the module routes replies.
Several clients therefore drive tables concurrently without seeing each other's replies.
"""
from __future__ import annotations

import enum
import itertools
import re
import shlex
import socket
import time
from dataclasses import dataclass, field
from typing import Callable

import paramiko

from ..errors import ChannelError, ContractViolation, ModuleError
from .guest_tools import DEBUGFS_CTL
from .ssh import SshChannel

PROTOCOL = 4
MAX_LINE = 1 << 16  # bytes in one reply line; the module's longest is a few hundred
MAX_LINES = 1 << 18  # lines in one call's output; a batch answers one line per request
_SAFE = re.compile(r"^[a-z_]+( [a-z_]+=[0-9a-zx|_a-z,]+)*$")


class Prot(enum.IntFlag):
    READ = 1 << 0
    WRITE = 1 << 1
    CACHE = 1 << 2
    NOEXEC = 1 << 3
    MMIO = 1 << 4
    PRIV = 1 << 5

    def wire(self) -> str:
        names = {Prot.READ: "read", Prot.WRITE: "write", Prot.CACHE: "cache",
                 Prot.NOEXEC: "noexec", Prot.MMIO: "mmio", Prot.PRIV: "priv"}
        parts = [name for flag, name in names.items() if self & flag]
        return "|".join(parts) if parts else "none"


@dataclass(frozen=True)
class Reply:
    index: int
    verb: str
    ret: int
    src: str
    fields: dict[str, str] = field(default_factory=dict)
    line: str = ""

    def num(self, key: str) -> int:
        try:
            return int(self.fields[key], 0)
        except KeyError:
            raise ModuleError(f"reply has no {key!r}: {self.line}") from None

    def ok(self) -> "Reply":
        if self.ret != 0:
            raise ModuleError(f"{self.verb} failed: {self.line}")
        return self


@dataclass(frozen=True)
class Tcr:
    """The translation control io-pgtable chose for a table, as the encodings of the Arm ARM's
    TCR_ELx fields (an SMMU context descriptor uses the same ones): what a device walking the
    table must be given. The module reads them from `raw_cfg()`; the host checks them."""

    t0sz: int  # 64 - input address bits
    tg0: int  # granule: 0 = 4K, 1 = 64K, 2 = 16K
    irgn0: int  # inner cacheability of walks: 0 NC, 1 WB-WA, 2 WT, 3 WB no WA
    orgn0: int  # outer cacheability, same encoding
    sh0: int  # shareability of walks: 0 non, 2 outer, 3 inner
    ips: int  # output address size: 0..6 = 32, 36, 40, 42, 44, 48, 52 bits


TCR_KEYS = ("tcr_t0sz", "tcr_tg0", "tcr_irgn0", "tcr_orgn0", "tcr_sh0", "tcr_ips")


class Quirk(enum.IntFlag):
    """io-pgtable's quirk bits (include/linux/io-pgtable.h)."""

    ARM_NS = 1 << 0
    NO_PERMS = 1 << 1
    ARM_MTK_EXT = 1 << 3
    ARM_MTK_TTBR_EXT = 1 << 4
    ARM_TTBR1 = 1 << 5
    ARM_OUTER_WBWA = 1 << 6
    ARM_HD = 1 << 7
    ARM_S2FWB = 1 << 8
    NO_WARN = 1 << 9


@dataclass(frozen=True)
class TableInfo:
    """A table as io-pgtable keeps it: ias, oas and pgsizes are the effective ones (narrowed
    to what the granule allows), not necessarily those asked for."""

    id: int
    ttbr: int
    mair: int
    ias: int
    oas: int
    pgsizes: int
    quirks: int = 0
    coherent_walk: bool = True
    tcr: Tcr | None = None


@dataclass(frozen=True)
class MapResult:
    ret: int
    mapped: int
    src: str
    why: str = ""


@dataclass(frozen=True)
class SmmuInfo:
    """What the module says about the SMMU it drives (the host checks it, not trusts it)."""

    strtab: int
    cd: int
    sid: int
    idr0: int
    idr1: int
    idr5: int
    granules: int
    oas: int
    edus: int
    attached: int


@dataclass(frozen=True)
class DmaResult:
    """One device transfer: `ret` 0 with `moved` bytes, or -14 with the SMMU's first event."""

    ret: int
    moved: int
    event: str
    iova: int
    events: int
    ns: int
    line: str

    @property
    def faulted(self) -> bool:
        return self.event != ""


def parse_reply(line: str) -> Reply:
    """One reply line; anything else the guest sends is a ModuleError, never a bare ValueError."""
    try:
        # shlex only where the module quoted something (`why='...'`): it is ~20x slower than
        # split, and the suite parses hundreds of thousands of replies
        words = shlex.split(line) if "'" in line or '"' in line or "\\" in line else line.split()
        if len(words) < 3 or not words[0].isdigit() or not words[2].startswith("ret="):
            raise ValueError("not `<index> <verb> ret=<errno> ...`")
        kv = dict(w.split("=", 1) for w in words[2:] if "=" in w)
        return Reply(int(words[0]), words[1], int(kv.pop("ret")), kv.pop("src", ""), kv, line)
    except ValueError as exc:
        raise ModuleError(f"reply outside the grammar ({exc}): {line[:300]!r}") from None


def check_contract(request: str, reply: Reply) -> None:
    """Checked on every reply the suite ever sees: map_pages must never report success
    without progress (the caller would retry forever)."""
    if reply.verb.startswith("map") and reply.src == "pgtable" and reply.ret == 0 \
            and int(reply.fields.get("mapped", "0"), 0) == 0:
        raise ContractViolation(f"map_pages returned Ok with mapped == 0 for: {request}")


def req(verb: str, **args: int | Prot | str) -> str:
    """One request line; numbers in hex, Prot as its wire names."""
    parts = [verb]
    for key, value in args.items():
        if isinstance(value, Prot):
            parts.append(f"{key}={value.wire()}")
        elif isinstance(value, int):
            parts.append(f"{key}={value:#x}")
        else:
            parts.append(f"{key}={value}")
    return " ".join(parts)


BULKY_REQUESTS = 16  # from this many requests on, a batch's replies are read by `cat`


def _bulky(text: str) -> bool:
    """Replies are a line per request: many requests, many bytes (the fork pays off from ~1.5 KB)."""
    return text.count("\n") + 1 >= BULKY_REQUESTS


def create_request(ias: int = 48, oas: int = 48, pgsizes: int = 0x40201000, quirks: int = 0,
                   coherent_walk: bool = True) -> str:
    """A `create` line (for batches, and for tests that expect a refusal)."""
    return req("create", ias=ias, oas=oas, pgsizes=pgsizes, quirks=int(quirks),
               coherent_walk="1" if coherent_walk else "0")


def table_info(reply: Reply) -> TableInfo:
    """The table a `create` or `info` reply describes."""
    n = reply.num
    return TableInfo(n("id"), n("ttbr"), n("mair"), n("ias"), n("oas"), n("pgsizes"),
                     quirks=n("quirks"), coherent_walk=bool(n("coherent_walk")),
                     tcr=Tcr(*(n(k) for k in TCR_KEYS)))


Runs = list[tuple[int, int, int]]  # (iova, size, pgsize); named here: the class has a `list`
Iovas = list[int]  # named here too, for the same reason
Events = list[tuple[str, int]]  # (SMMU event name or "ok", iova)


class ModuleClient:
    def __init__(self, ssh: SshChannel, timeout: float = 120.0,
                 on_timeout: Callable[[], None] | None = None) -> None:
        """`on_timeout` runs when a reply misses its deadline (e.g. to look for a guest hang)."""
        self.timeout = timeout
        self.on_timeout = on_timeout
        try:
            self._chan = ssh.transport().open_session(timeout=10)
            self._chan.settimeout(timeout)
            self._chan.exec_command("sh")
        except (paramiko.SSHException, OSError) as exc:
            raise ChannelError(f"cannot open a guest shell: {exc}") from exc
        self._buf = b""
        self._nonce = itertools.count(1)
        self.dirty = False  # `shell()` ran a caller's script: the shell may carry its state
        self.machine: object = None  # whose guest it talks to, for a pool (GuestManager.client)

    def close(self) -> None:
        self._chan.close()

    @property
    def reusable(self) -> bool:
        """Open (a missed deadline closes it: a late reply would be misread), nothing unread,
        and no caller's script run in its shell."""
        return not self._chan.closed and not self._buf and not self.dirty

    def retime(self, timeout: float, on_timeout: Callable[[], None] | None) -> None:
        """A reused client takes the next test's deadline and hang check."""
        self.timeout, self.on_timeout = timeout, on_timeout
        self._chan.settimeout(timeout)

    def _readline(self, deadline: float) -> str:
        while b"\n" not in self._buf:
            try:
                chunk = self._chan.recv(65536) if time.monotonic() < deadline else None
            except socket.timeout:
                chunk = None
            except OSError as exc:
                raise ChannelError(f"guest shell failed: {exc}") from exc
            if chunk is None:
                # A late reply would be read as the next request's: this client is done.
                self._chan.close()
                if self.on_timeout is not None:
                    self.on_timeout()
                raise ChannelError(f"no reply from the guest within {self.timeout:g} s")
            if not chunk:
                raise ChannelError("guest shell closed (did the guest crash?)")
            self._buf += chunk
            if b"\n" not in self._buf and len(self._buf) > MAX_LINE:
                raise ModuleError(f"guest sent a line longer than {MAX_LINE} bytes")
        line, self._buf = self._buf.split(b"\n", 1)
        if len(line) > MAX_LINE:
            raise ModuleError(f"guest sent a line longer than {MAX_LINE} bytes")
        return line.decode(errors="replace")

    def shell(self, script: str) -> list[str]:
        """Run `script` in this client's own guest shell (same process as its requests: e.g.
        `echo 1 > /proc/self/make-it-fail` arms fault injection for this client only). The
        client is then `dirty`: a pool must not hand it to anyone else."""
        self.dirty = True
        return self._script(script)

    def _script(self, script: str) -> list[str]:
        nonce = next(self._nonce)
        try:
            self._chan.sendall(f"{script}\necho '@@END {nonce}'\n".encode())
        except OSError as exc:
            raise ChannelError(f"guest shell failed: {exc}") from exc
        deadline = time.monotonic() + self.timeout
        lines = []
        while (line := self._readline(deadline)) != f"@@END {nonce}":
            lines.append(line)
            if len(lines) > MAX_LINES:
                raise ModuleError(f"guest sent more than {MAX_LINES} lines for one call")
        return lines

    def raw(self, text: str, before: str = "") -> tuple[int, list[str]]:
        """Write `text` as one batch; returns (write's exit status, reply lines). No checks.
        `before` runs just before the write, in the writing process (e.g. a barrier that
        several clients wait at, so that their writes start together)."""
        return self._write_and_read(f"echo {shlex.quote(text)}", _bulky(text), before)

    def raw_bytes(self, data: bytes) -> tuple[int, list[str]]:
        """Write arbitrary bytes (invalid UTF-8 too) as one batch, through the shell's builtin
        `echo -ne` (one write()); returns (write's exit status, reply lines). No checks."""
        safe = set(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 =|_.,:#-")
        text = "".join(chr(b) if b in safe else f"\\0{b:03o}" for b in data)
        return self._write_and_read(f"echo -ne '{text}'", _bulky(data.decode(errors="replace")))

    def _write_and_read(self, echo: str, bulky: bool = False,
                        before: str = "") -> tuple[int, list[str]]:
        """`echo` (a builtin: one write()) into the file, then the replies read back by the
        same guest process; the write's exit status comes back as an `@@W<status>` line.
        Small replies are read by this shell itself (its `read` builtin takes one byte per
        system call, ~10 us a byte under TCG); a bulky one by a subshell that writes and then
        becomes `cat` (exec keeps its pid, so the module still sees the writer reading), which
        costs a fork (~15 ms) but reads 16 times faster. `before` runs in the process that
        writes, after any fork."""
        first = f"{before}; " if before else ""
        if bulky:  # `cat` passes on a last line without its newline: end with one of ours
            out = self._script(f"( {first}{echo} > {DEBUGFS_CTL}; echo \"@@W$?\"; "
                               f"exec cat {DEBUGFS_CTL} ); echo; echo @@C")
            end = out.index("@@C") if "@@C" in out else len(out)
            out = out[:end - 1] if end and out[end - 1] == "" else out[:end]
            return self._status(out)
        return self._status(self._script(f"{first}{echo} > {DEBUGFS_CTL}; echo \"@@W$?\"; "
                                       f"while IFS= read -r l; do echo \"$l\"; done < {DEBUGFS_CTL}"))

    @staticmethod
    def _status(out: list[str]) -> tuple[int, list[str]]:
        status = next((int(line[3:]) for line in out if re.fullmatch(r"@@W\d+", line)), -1)
        return status, [line for line in out if not re.fullmatch(r"@@W\d+", line)]

    def batch(self, requests: list[str], before: str = "") -> list[Reply]:
        """Every request in one write, every reply checked; `before` as for `raw`."""
        for r in requests:
            if not _SAFE.match(r):
                raise ModuleError(f"request outside the grammar: {r!r}")
        status, lines = self.raw("\n".join(requests), before)
        if status != 0:
            raise ModuleError(f"batch rejected by the module (write status {status}): "
                              + " | ".join(lines))
        replies = [parse_reply(line) for line in lines]
        if len(replies) != len(requests):
            raise ModuleError(f"{len(requests)} requests but {len(replies)} replies: {lines}")
        for request, reply in zip(requests, replies):
            check_contract(request, reply)
        return replies

    def request(self, line: str) -> Reply:
        return self.batch([line])[0]

    # Typed helpers over the grammar.
    def version(self) -> int:
        return self.request("version").ok().num("protocol")

    def create(self, ias: int = 48, oas: int = 48, pgsizes: int = 0x40201000,
               quirks: int = 0, coherent_walk: bool = True) -> TableInfo:
        return self._table_info(create_request(ias, oas, pgsizes, quirks, coherent_walk))

    def info(self, table: int) -> TableInfo:
        return self._table_info(req("info", id=table))

    def _table_info(self, line: str) -> TableInfo:
        return table_info(self.request(line).ok())

    def destroy(self, table: int) -> Reply:
        return self.request(req("destroy", id=table))

    def list(self) -> list[int]:
        ids = self.request("list").ok().fields.get("ids", "")
        return [int(i) for i in ids.split(",") if i]

    def map(self, table: int, iova: int, paddr: int, pgsize: int, pgcount: int, prot: Prot,
            unchecked: bool = False) -> MapResult:
        verb = "map_unchecked" if unchecked else "map"
        r = self.request(req(verb, id=table, iova=iova, paddr=paddr, pgsize=pgsize,
                             pgcount=pgcount, prot=prot))
        return MapResult(r.ret, int(r.fields.get("mapped", "0"), 0), r.src, r.fields.get("why", ""))

    def unmap(self, table: int, iova: int, pgsize: int, pgcount: int,
              unchecked: bool = False) -> Reply:
        verb = "unmap_unchecked" if unchecked else "unmap"
        return self.request(req(verb, id=table, iova=iova, pgsize=pgsize, pgcount=pgcount))

    def iova_to_phys(self, table: int, iova: int) -> int:
        return self.request(req("iova_to_phys", id=table, iova=iova)).ok().num("phys")

    def smmu(self) -> SmmuInfo:
        r = self.request("smmu").ok()
        return SmmuInfo(*(r.num(k) for k in ("strtab", "cd", "sid", "idr0", "idr1", "idr5",
                                             "granules", "oas", "edus", "attached")))

    def attach(self, table: int) -> Reply:
        return self.request(req("attach", id=table))

    def detach(self) -> Reply:
        return self.request("detach").ok()

    def dma(self, table: int, iova: int, length: int, to_device: bool, off: int = 0,
            expect: str | None = None) -> DmaResult:
        """A transfer between `iova` (through the SMMU) and the device's buffer at `off`;
        `expect` names the fault the caller provokes (translation, permission, access,
        addr_size): the module logs it as expected, not as a splat."""
        args: dict[str, int | str] = dict(id=table, iova=iova, len=length, off=off,
                                          dir="to_device" if to_device else "from_device")
        if expect is not None:
            args["expect"] = expect
        r = self.request(req("dma", **args))
        if r.ret not in (0, -14):
            raise ModuleError(f"dma failed: {r.line}")
        f = r.fields
        return DmaResult(r.ret, int(f.get("moved", "0"), 0), f.get("event", ""),
                         int(f.get("iova", "0"), 0), int(f.get("events", "0"), 0),
                         int(f.get("ns", "0"), 0), r.line)

    def probe(self, table: int, iovas: Iovas) -> Events:
        """The device's view of up to 8 iovas (8-byte reads, several edus at once): per iova,
        ("ok", iova) or (the first SMMU event's name, its iova)."""
        r = self.request(f"probe id={table:#x} iovas={','.join(f'{i:#x}' for i in iovas)}").ok()
        seen = r.fields.get("seen", "").split(",")
        if len(seen) != len(iovas):
            raise ModuleError(f"probe of {len(iovas)} iovas answered {len(seen)}: {r.line}")
        return [("ok", iova) if word == "ok" else (word.split("@")[0], int(word.split("@")[1], 0))
                for word, iova in zip(seen, iovas)]

    def tlbi(self, iova: int | None = None, length: int = 1) -> Reply:
        line = "tlbi" if iova is None else req("tlbi", iova=iova, len=length)
        return self.request(line).ok()

    def events(self) -> Events:
        r = self.request("events").ok()
        return [(e.split("@")[0], int(e.split("@")[1], 0))
                for e in r.fields.get("events", "").split(",") if e]

    def record(self, table: int) -> "Runs":
        """The module's record of a table: its runs (iova, size, pgsize), read page by page."""
        runs: Runs = []
        start = 0
        while True:
            r = self.request(req("record", id=table, start=start)).ok()
            for word in filter(None, r.fields.get("runs", "").split(",")):
                iova, size, pgsize = (int(x, 0) for x in word.split(":"))
                runs.append((iova, size, pgsize))
            if "next" not in r.fields:
                return runs
            start = r.num("next")
