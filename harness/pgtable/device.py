"""A table as a device sees it: the edu DMAs through the SMMU with the table attached, and the
host puts and checks the bytes in the guest RAM the kernel does not use (the DMA window).

Where a transfer's bytes land is decided by the host walk (`Walk.translate`), never by what the
test asked to map: the device, the host decoder and io-pgtable must agree on every byte.
"""
from __future__ import annotations

import random
from dataclasses import dataclass

from ..errors import WalkError
from ..guest.guestmem import ShmMemory
from ..guest.modclient import DmaResult, ModuleClient
from ..guest.qmp import QmpChannel
from . import smmuv3
from .tables import GuestTable
from .walker import Walk

PROBES = 8  # iovas the module's `probe` reads in one request


@dataclass(frozen=True)
class Placed:
    """Bytes the host wrote for a transfer, and where (guest-physical runs)."""

    data: bytes
    runs: tuple[tuple[int, int], ...]  # (paddr, length)


class DmaBench:
    def __init__(self, client: ModuleClient, memory: ShmMemory, qmp: QmpChannel) -> None:
        if memory.window is None:
            raise WalkError("guest memory has no DMA window: cannot place DMA buffers")
        self.client, self.memory, self.qmp = client, memory, qmp
        self.start, self.size = memory.window
        self._oas: int | None = None
        self._snap: bytearray | None = None  # the window's snapshot, and its bytes later
        self._now: bytearray | None = None

    @property
    def smmu_oas(self) -> int:
        """The SMMU's implemented output size, read from its IDR5 by the host (once)."""
        if self._oas is None:
            self._oas = smmuv3.implemented_oas(self.qmp)
        return self._oas

    def disagreements(self, table: GuestTable, w: Walk, iovas: list[int]) -> list[str]:
        """The device's view against the host walk, one 8-byte device read per iova: where the
        walk has no leaf, F_TRANSLATION at that iova; where the leaf's output is at or above
        the effective output size (the table's oas, at most the SMMU's), F_ADDR_SIZE; else the
        read goes through with no event. (Where the bytes land is the DMA tests' business:
        these tables map memory that is not the DMA window's.) Attaches the table."""
        self.attach(table)
        limit = 1 << min(table.info.oas, self.smmu_oas)
        problems = []
        for at in range(0, len(iovas), PROBES):
            chunk = iovas[at:at + PROBES]
            for iova, (event, where) in zip(chunk, self.client.probe(table.id, chunk)):
                pa = w.translate(iova)
                want = "F_TRANSLATION" if pa is None else "F_ADDR_SIZE" if pa >= limit else "ok"
                if (event, where) != (want, iova):
                    seen = "unmapped" if pa is None else f"{pa:#x}"
                    problems.append(f"iova {iova:#x}: the host walk says {seen}, so the device "
                                    f"should see {want}; it saw {event} at {where:#x}")
        return problems

    def pa(self, offset: int) -> int:
        """The guest-physical address `offset` bytes into the DMA window."""
        if not 0 <= offset < self.size:
            raise WalkError(f"offset {offset:#x} is outside the {self.size:#x}-byte DMA window")
        return self.start + offset

    def attach(self, table: GuestTable) -> None:
        self.client.attach(table.id).ok()

    def runs(self, w: Walk, iova: int, length: int) -> tuple[tuple[int, int], ...]:
        """Where `[iova, iova + length)` lands, leaf by leaf, per the host walk; every byte
        must be mapped and inside the DMA window (else the test is unsafe: WalkError)."""
        out, at = [], iova
        while at < iova + length:
            leaf = w.leaf_at(at)
            if leaf is None:
                raise WalkError(f"iova {at:#x} is not mapped in the host walk")
            n = min(iova + length, leaf.iova + leaf.size) - at
            pa = leaf.translate(at)
            if not (self.start <= pa and pa + n <= self.start + self.size):
                raise WalkError(f"iova {at:#x} -> {pa:#x}+{n:#x} is outside the DMA window")
            out.append((pa, n))
            at += n
        return tuple(out)

    def place(self, w: Walk, iova: int, length: int, seed: int) -> Placed:
        """Random bytes at the guest-physical places `[iova, iova + length)` maps to."""
        data = random.Random(seed).randbytes(length)
        runs, done = self.runs(w, iova, length), 0
        for pa, n in runs:
            self.memory.write(pa, data[done:done + n])
            done += n
        return Placed(data, runs)

    def clear(self, w: Walk, iova: int, length: int, fill: int = 0) -> None:
        for pa, n in self.runs(w, iova, length):
            self.memory.write(pa, bytes([fill]) * n)

    def read(self, w: Walk, iova: int, length: int) -> bytes:
        return b"".join(self.memory.read(pa, n) for pa, n in self.runs(w, iova, length))

    def window_bytes(self) -> bytes:
        return self.memory.read(self.start, self.size)

    def snapshot(self) -> bytearray:
        """The window's bytes now, in a buffer this bench keeps (the next snapshot reuses
        it): for `changed_only` and `unchanged`, which compare without a 64 MiB allocation."""
        if self._snap is None:
            self._snap, self._now = bytearray(self.size), bytearray(self.size)
        self.memory.read_into(self.start, self._snap)
        return self._snap

    def unchanged(self, before: bytearray) -> bool:
        """True if no byte of the window changed since `before` (a `snapshot`)."""
        assert self._now is not None, "take a snapshot first"
        self.memory.read_into(self.start, self._now)
        return self._now == before

    def changed_only(self, before: bytearray, placed: list[tuple[int, bytes]]) -> bool:
        """True if the window is now `before` (a `snapshot`, which this overwrites) with
        `placed` (guest-physical address, bytes) written over it, and no other byte changed."""
        for pa, data in placed:
            before[pa - self.start:pa - self.start + len(data)] = data
        return self.unchanged(before)

    def to_device(self, table: GuestTable, iova: int, length: int, off: int = 0,
                  expect: str | None = None) -> DmaResult:
        return self.client.dma(table.id, iova, length, True, off, expect)

    def from_device(self, table: GuestTable, iova: int, length: int, off: int = 0,
                    expect: str | None = None) -> DmaResult:
        return self.client.dma(table.id, iova, length, False, off, expect)

    def roundtrip(self, table: GuestTable, src: int, dst: int, length: int,
                  seed: int = 1) -> tuple[bytes, bytes]:
        """Host bytes at src's places -> device -> dst's places; (sent, what dst's places
        hold afterwards). Both transfers must move every byte without an SMMU event."""
        w = table.walk()
        sent = self.place(w, src, length, seed)
        self.clear(w, dst, length)
        for r in (self.to_device(table, src, length), self.from_device(table, dst, length)):
            if r.ret != 0 or r.moved != length:
                raise WalkError(f"transfer failed: {r.line}")
        return sent.data, self.read(w, dst, length)
