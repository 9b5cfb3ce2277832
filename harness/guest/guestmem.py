"""Readers of guest-physical memory: the shared-memory mapping (fast), QMP pmemsave (portable),
and an in-memory fake for host-only tests. All return identical bytes for the same address."""
from __future__ import annotations

import mmap
import os
from pathlib import Path
from typing import Protocol

from ..errors import WalkError
from .qmp import QmpChannel


class GuestMemory(Protocol):
    def read(self, addr: int, size: int) -> bytes: ...


def check_in_ram(addr: int, size: int, base: int, ram_size: int) -> int:
    """The offset of [addr, addr + size) in RAM, or WalkError: a descriptor the guest wrote
    may point anywhere, and a read of MMIO (the SMMU's registers, a device's BAR) has effects."""
    off = addr - base
    if size < 0 or off < 0 or off + size > ram_size:
        raise WalkError(f"guest-physical {addr:#x}+{size:#x} is outside RAM "
                        f"[{base:#x}, {base + ram_size:#x})")
    return off


class ShmMemory:
    """Guest RAM mapped from QEMU's `memory-backend-file,share=on` (~0.3 µs per 4 KiB).

    Read-only, except for one optional `window` (guest-physical start, size) mapped writable:
    the RAM the guest kernel was told does not exist, where DMA tests put their buffers. A
    write anywhere else is refused, so the host can never scribble over the kernel's memory."""

    def __init__(self, path: Path, base: int, size: int,
                 window: tuple[int, int] | None = None) -> None:
        fd = os.open(path, os.O_RDONLY if window is None else os.O_RDWR)
        try:
            self._map = mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ)
            self._window = None
            if window is not None:
                start, length = window
                if start < base or start + length > base + size or (start - base) % mmap.PAGESIZE:
                    raise WalkError(f"DMA window {start:#x}+{length:#x} is not page-aligned RAM")
                self._window = (start, mmap.mmap(fd, length, mmap.MAP_SHARED,
                                                 mmap.PROT_READ | mmap.PROT_WRITE,
                                                 offset=start - base))
        finally:
            os.close(fd)
        self.base, self.size = base, size

    @property
    def window(self) -> tuple[int, int] | None:
        """(start, size) of the writable window, if any."""
        return None if self._window is None else (self._window[0], len(self._window[1]))

    def write(self, addr: int, data: bytes) -> None:
        """Write into the DMA window only (WalkError elsewhere)."""
        if self._window is None:
            raise WalkError("this guest's memory has no writable DMA window")
        start, wmap = self._window
        off = addr - start
        if off < 0 or off + len(data) > len(wmap):
            raise WalkError(f"guest-physical {addr:#x}+{len(data):#x} is outside the DMA window "
                            f"[{start:#x}, {start + len(wmap):#x})")
        wmap[off:off + len(data)] = data

    def read(self, addr: int, size: int) -> bytes:
        off = check_in_ram(addr, size, self.base, self.size)
        return self._map[off:off + size]

    def read_into(self, addr: int, buf: bytearray) -> None:
        """`read` into the caller's buffer: for tens of MiB at a time, a fresh bytes object
        costs its page faults on every read; a buffer kept between reads costs them once."""
        off = check_in_ram(addr, len(buf), self.base, self.size)
        memoryview(buf)[:] = memoryview(self._map)[off:off + len(buf)]

    def close(self) -> None:
        self._map.close()
        if self._window is not None:
            self._window[1].close()


class PmemsaveMemory:
    """QMP `pmemsave` into the 0700 run directory (~0.4 ms per 4 KiB). pmemsave reads any
    guest-physical address, MMIO included, so reads are held to RAM here as well."""

    def __init__(self, qmp: QmpChannel, rundir: Path, base: int, size: int) -> None:
        self.qmp, self.rundir, self.base, self.size = qmp, rundir, base, size

    def read(self, addr: int, size: int) -> bytes:
        check_in_ram(addr, size, self.base, self.size)
        return self.qmp.pmemsave(addr, size, self.rundir / f"pmem-{addr:x}.bin")


class FakeMemory:
    """Sparse memory for host-only tests: unwritten bytes read as zero."""

    def __init__(self) -> None:
        self.pages: dict[int, bytearray] = {}

    def write(self, addr: int, data: bytes) -> None:
        done = 0
        while done < len(data):
            a = addr + done
            page = self.pages.setdefault(a & ~0xFFF, bytearray(4096))
            n = min(len(data) - done, 4096 - (a & 0xFFF))
            page[a & 0xFFF:(a & 0xFFF) + n] = data[done:done + n]
            done += n

    def write_u64(self, addr: int, value: int) -> None:
        self.write(addr, value.to_bytes(8, "little"))

    def read_into(self, addr: int, buf: bytearray) -> None:
        buf[:] = self.read(addr, len(buf))

    def read(self, addr: int, size: int) -> bytes:
        out = bytearray()
        while len(out) < size:
            a = addr + len(out)
            n = min(size - len(out), 4096 - (a & 0xFFF))
            page = self.pages.get(a & ~0xFFF)
            out += page[a & 0xFFF:(a & 0xFFF) + n] if page else bytes(n)
        return bytes(out)
