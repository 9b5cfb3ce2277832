"""A Python stand-in for the guest module (images/module/iopt_hil.rs): the same request grammar
and replies, a record of mappings kept in `harness.pgtable.model.TableModel`, and real LPAE
stage-1 descriptors written into a `FakeMemory`, so a host walk of a fake table sees what the
module claims to have mapped.

Like io-pgtable-arm, one map call stops at the end of the current leaf table (a short success).
Knobs for the harness's own tests: `zero_progress` (map answers Ok with mapped == 0, the
contract break the client must catch), `drop_replies` (answer fewer lines than requested).
`trigger what=warn|panic|hang` call the owner's hooks (console lines, crash, stall).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from harness.guest.guestmem import FakeMemory
from harness.guest.modclient import PROTOCOL, Prot
from harness.pgtable.lpae import Granule, granule_for
from harness.pgtable.model import TableModel
from tests.unit.tablebuilder import AF, NG, TableBuilder

MAIR = 0xfffffffff404ff44  # what the real module reads back (see DESIGN.md)
EINVAL, ENOENT, EEXIST, ERANGE = 22, 2, 17, 34
IPS_BITS = (32, 36, 40, 42, 44, 48, 52)
VERBS = {"version", "create", "destroy", "list", "info", "map", "map_unchecked", "unmap",
         "unmap_unchecked", "iova_to_phys", "record", "trigger"}
PROT_NAMES = {"read": Prot.READ, "write": Prot.WRITE, "cache": Prot.CACHE,
              "noexec": Prot.NOEXEC, "mmio": Prot.MMIO, "priv": Prot.PRIV, "none": Prot(0)}
WARN_LINES = ["------------[ cut here ]------------",
              "WARNING: CPU: 0 PID: 77 at iopt_hil.rs:676 iopt_hil::trigger+0x40/0x80 [iopt_hil]",
              "---[ end trace 0000000000000000 ]---"]


class ParseError(Exception):
    pass


def parse_request(line: str) -> tuple[str, dict[str, int]]:
    verb, *words = line.split()
    if verb not in VERBS:
        raise ParseError(f"unknown verb {verb}")
    args: dict[str, int] = {}
    for word in words:
        key, sep, value = word.partition("=")
        if not sep:
            raise ParseError(f"expected key=value, got {word}")
        if key == "prot" and not value[0].isdigit():
            try:
                args[key] = int(sum((PROT_NAMES[n] for n in value.split("|")), Prot(0)))
            except KeyError:
                raise ParseError(f"unknown prot {value}") from None
        elif key == "what":
            args[key] = ("warn", "panic", "hang").index(value) if value in ("warn", "panic",
                                                                            "hang") else -1
        else:
            try:
                args[key] = int(value, 0)
            except ValueError:
                raise ParseError(f"bad number {value}") from None
    return verb, args


def leaf_attrs(prot: int) -> int:
    """io-pgtable-arm's stage-1 prot -> descriptor bits (AttrIndx 0 NC, 1 cached, 2 device)."""
    attrs = AF | NG | (3 << 8)
    attrs |= (1 << 2) if prot & Prot.CACHE else (2 << 2) if prot & Prot.MMIO else 0
    attrs |= 0 if prot & Prot.PRIV else 1 << 6
    attrs |= 0 if prot & Prot.WRITE else 1 << 7
    attrs |= (1 << 54) if prot & Prot.NOEXEC else 0
    return attrs


@dataclass
class FakeTable:
    id: int
    ias: int
    oas: int
    pgsizes: int
    builder: TableBuilder
    model: TableModel = field(default_factory=TableModel)
    slots: dict[int, int] = field(default_factory=dict)  # leaf iova -> descriptor address

    @property
    def granule(self) -> Granule:
        return self.builder.granule

    quirks: int = 0
    coherent_walk: bool = True

    def line(self) -> str:
        tg0 = {0x1000: 0, 0x10000: 1, 0x4000: 2}[self.granule.size]
        ips = (32, 36, 40, 42, 44, 48, 52).index(self.oas) if self.oas in IPS_BITS else 7
        rgn, sh = (1, 3) if self.coherent_walk else (0, 2)
        return (f"id={self.id} fmt=arm64-lpae-s1 ttbr={self.builder.ttbr:#x} mair={MAIR:#x} "
                f"ias={self.ias} oas={self.oas} pgsizes={self.pgsizes:#x} "
                f"quirks={self.quirks:#x} coherent_walk={int(self.coherent_walk)} "
                f"tcr_t0sz={64 - self.ias} tcr_tg0={tg0} tcr_irgn0={rgn} tcr_orgn0={rgn} "
                f"tcr_sh0={sh} tcr_ips={ips}")


class FakeModule:
    """Executes batches like the real module; `run_batch` returns (write ok, reply lines)."""

    def __init__(self, memory: FakeMemory | None = None) -> None:
        self.memory = memory if memory is not None else FakeMemory()
        self.tables: dict[int, FakeTable] = {}
        self.next_id = 1
        self.zero_progress = False
        self.drop_replies = 0
        self.batches: list[list[str]] = []  # every batch written, as request lines
        self.on_warn: Callable[[list[str]], None] = lambda lines: None
        self.on_panic: Callable[[], None] = lambda: None
        self.on_hang: Callable[[], None] = lambda: None

    def run_batch(self, text: str) -> tuple[bool, list[str]]:
        lines = [ln.strip() for ln in text.splitlines()]
        requests = [(n, ln) for n, ln in enumerate(lines, 1) if ln and not ln.startswith("#")]
        parsed = []
        for lineno, line in requests:
            try:
                parsed.append(parse_request(line))
            except ParseError as exc:
                return False, [f'parse-error line={lineno} ret=-22 why="{exc}"']
        self.batches.append([line for _, line in requests])
        out = [f"{i} {verb} {self.execute(verb, args)}" for i, (verb, args) in enumerate(parsed)]
        return True, out[:len(out) - self.drop_replies]

    def execute(self, verb: str, a: dict[str, int]) -> str:
        if verb == "version":
            return f"ret=0 protocol={PROTOCOL}"
        if verb == "create":
            return self._create(a)
        if verb == "list":
            return "ret=0 ids=" + ",".join(str(i) for i in self.tables)
        if verb == "trigger":
            return self._trigger(a.get("what", -1))
        table = self.tables.get(a.get("id", -1))
        if table is None:
            return f'ret=-{ENOENT} src=check why="no such table"'
        if verb == "destroy":
            del self.tables[table.id]
            return "ret=0"
        if verb == "info":
            return "ret=0 " + table.line()
        if verb == "iova_to_phys":
            iova = a["iova"]
            leaf = next((m for m in table.model.leaves.values()
                         if m.iova <= iova < m.iova + m.size), None)
            return f"ret=0 phys={(leaf.paddr + iova - leaf.iova) if leaf else 0:#x}"
        if verb == "record":
            start = a.get("start", 0)
            runs = [m for m in sorted(table.model.leaves.values(), key=lambda m: m.iova)
                    if m.iova >= start]  # one run per leaf: the real module may merge fewer
            page = ",".join(f"{m.iova:#x}:{m.size:#x}:{m.size:#x}" for m in runs[:64])
            more = f" next={runs[64].iova:#x}" if len(runs) > 64 else ""
            return f"ret=0 runs={page}{more}"
        if verb.startswith("map"):
            return self._map(table, a, checked=verb == "map")
        return self._unmap(table, a, checked=verb == "unmap")

    def _create(self, a: dict[str, int]) -> str:
        ias, oas = a.get("ias", 48), a.get("oas", 48)
        pgsizes = a.get("pgsizes", 0x40201000)
        if not (12 <= ias <= 52 and 12 <= oas <= 52):
            return f'ret=-{EINVAL} src=check why="ias and oas must be 12..=52"'
        granule = granule_for(pgsizes)
        top = 52 if granule.size == 0x10000 else 48  # io-pgtable clamps, as the module reports
        ias, oas = min(ias, top), min(oas, top)
        builder = TableBuilder(granule, ias, base=0x4000_0000 + self.next_id * 0x100_0000)
        builder.mem = self.memory  # one guest RAM for every table
        table = FakeTable(self.next_id, ias, oas, pgsizes, builder, quirks=a.get("quirks", 0),
                          coherent_walk=bool(a.get("coherent_walk", 1)))
        self.tables[table.id] = table
        self.next_id += 1
        return "ret=0 " + table.line()

    def _geometry(self, table: FakeTable, a: dict[str, int]) -> str | None:
        pgsize, pgcount, iova = a["pgsize"], a["pgcount"], a["iova"]
        if pgsize == 0 or pgsize & (pgsize - 1) or pgsize & table.pgsizes != pgsize:
            return f'ret=-{EINVAL} src=check why="pgsize not in the table\'s bitmap"'
        if pgcount == 0:
            return f'ret=-{EINVAL} src=check why="pgcount is 0"'
        if iova % pgsize:
            return f'ret=-{EINVAL} src=check why="iova not aligned to pgsize"'
        if iova + pgsize * pgcount > 1 << table.ias:
            return f'ret=-{ERANGE} src=check why="iova range beyond ias"'
        return None

    def _map(self, table: FakeTable, a: dict[str, int], checked: bool) -> str:
        iova, paddr, pgsize, pgcount, prot = (a["iova"], a["paddr"], a["pgsize"], a["pgcount"],
                                              a["prot"])
        if checked:
            refused = self._geometry(table, a)
            if refused:
                return refused
            if not prot & (Prot.READ | Prot.WRITE):
                return f'ret=-{EINVAL} src=check why="prot has neither read nor write"'
            if not table.model.free(iova, pgsize * pgcount):
                return f'ret=-{EEXIST} src=check why="overlaps an existing mapping"'
        if self.zero_progress:
            return "ret=0 src=pgtable mapped=0x0"
        if not table.model.free(iova, pgsize):
            return f"ret=-{EEXIST} src=pgtable mapped=0x0"
        per_table = table.granule.size // 8
        count = min(pgcount, per_table - (iova // pgsize) % per_table)  # one leaf table per call
        for i in range(count):
            leaf_iova, leaf_pa = iova + i * pgsize, paddr + i * pgsize
            table.slots[leaf_iova] = table.builder.map(leaf_iova, leaf_pa, pgsize, leaf_attrs(prot))
        table.model.map(iova, paddr, pgsize, count, prot)
        return f"ret=0 src=pgtable mapped={count * pgsize:#x}"

    def _unmap(self, table: FakeTable, a: dict[str, int], checked: bool) -> str:
        iova, size = a["iova"], a["pgsize"] * a["pgcount"]
        inside = [m for m in table.model.leaves.values() if iova <= m.iova < iova + size]
        if checked:
            refused = self._geometry(table, a)
            if refused:
                return refused
            if sum(m.size for m in inside) != size or any(m.size > a["pgsize"] for m in inside):
                return (f'ret=-{ENOENT} src=check why="range is not exactly covered by mappings'
                        ' of pgsize or smaller"')
        for m in inside:
            self.memory.write_u64(table.slots.pop(m.iova), 0)
        table.model.unmap(iova, size)
        return f"ret=0 src=pgtable unmapped={sum(m.size for m in inside):#x}"

    def _trigger(self, what: int) -> str:
        if what == 0:
            self.on_warn(WARN_LINES)
            return "ret=0"
        if what == 1:
            self.on_panic()
        else:
            self.on_hang()
        return "ret=0"  # never seen: the owner crashed or stalled the guest
