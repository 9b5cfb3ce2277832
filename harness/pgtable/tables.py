"""A page table in the guest seen from both sides: requests through the module, and the table
itself walked from guest memory on the host."""
from __future__ import annotations

from ..errors import HarnessError
from ..guest.guestmem import GuestMemory
from .lpae import Granule, granule_for
from ..guest.modclient import MapResult, ModuleClient, Prot, Reply, TableInfo
from ..guest.qmp import QmpChannel
from .walker import Walk, walk


class GuestTable:
    def __init__(self, client: ModuleClient, info: TableInfo, memory: GuestMemory,
                 qmp: QmpChannel) -> None:
        self.client, self.info, self.memory, self.qmp = client, info, memory, qmp

    @property
    def id(self) -> int:
        return self.info.id

    @property
    def granule(self) -> Granule:
        return granule_for(self.info.pgsizes)

    def map(self, iova: int, paddr: int, pgsize: int, pgcount: int = 1,
            prot: Prot = Prot.READ | Prot.WRITE, unchecked: bool = False) -> MapResult:
        return self.client.map(self.id, iova, paddr, pgsize, pgcount, prot, unchecked)

    def unmap(self, iova: int, pgsize: int, pgcount: int = 1, unchecked: bool = False) -> int:
        reply: Reply = self.client.unmap(self.id, iova, pgsize, pgcount, unchecked).ok()
        return reply.num("unmapped")

    def iova_to_phys(self, iova: int) -> int:
        return self.client.iova_to_phys(self.id, iova)

    def walk(self) -> Walk:
        """The whole table, read while the vCPUs are stopped (a consistent snapshot)."""
        with self.qmp.paused():
            return walk(self.memory, self.info.ttbr, self.granule, self.info.ias, self.info.mair,
                        oas=self.info.oas)

    def destroy(self) -> None:
        self.client.destroy(self.id).ok()


def describe_walks(tables: list[GuestTable], max_leaves: int = 16) -> str:
    """What the host sees in each table right now: leaves, table pages and any problem."""
    out = []
    for table in tables:
        info = table.info
        head = (f"table {info.id} ({table.granule.name} granule, ias {info.ias}, oas {info.oas}, "
                f"ttbr {info.ttbr:#x})")
        try:
            w = table.walk()
        except HarnessError as exc:
            out.append(f"{head}: walk failed: {exc}")
            continue
        out.append(f"{head}: {len(w.leaves)} leaves, {w.mapped_bytes():#x} bytes mapped, "
                   f"{len(w.tables)} table pages, {len(w.problems)} problems")
        out += [f"  problem: {p}" for p in w.problems]
        out += [f"  {leaf.describe()}" for leaf in w.leaves[:max_leaves]]
        if len(w.leaves) > max_leaves:
            out.append(f"  ... {len(w.leaves) - max_leaves} more leaves")
    return "\n".join(out)

