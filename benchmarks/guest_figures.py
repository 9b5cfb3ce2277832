"""Prints the figures issue notes quote: prepare (build or cache hit), boot-to-ready, request
throughput through the debugfs module, host walk / memory-read costs, and one device DMA
through the SMMU (the edu's round trip, as the module times it and as the host sees it).

    .venv/bin/python benchmarks/guest_figures.py [--tree PATH]
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from harness.guest.guestmem import PmemsaveMemory
from harness.guest.machine import Machine
from harness.guest.modclient import ModuleClient, req
from harness.build.pipeline import BuildRequest, prepare
from harness.pgtable.device import DmaBench
from harness.pgtable.tables import GuestTable


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tree", type=Path)
    args = ap.parse_args()
    t0 = time.monotonic()
    prepared = prepare(BuildRequest(tree=args.tree), progress=lambda m: None)
    print(f"prepare (rebuilt={prepared.build.rebuilt}): {time.monotonic() - t0:.1f} s")
    with Machine(prepared.build, prepared.root, progress=lambda m: None) as m:
        assert m.info is not None and m.qmp is not None and m.memory is not None
        print(f"boot to SSH-ready: {m.info.seconds_to_ready:.2f} s")
        client = ModuleClient(m.require_ssh())
        info = client.create()
        table = GuestTable(client, info, m.memory, m.qmp)
        n = 2000
        batch = [req("map", id=info.id, iova=i << 12, paddr=(1 << 32) + (i << 12), pgsize=0x1000,
                     pgcount=1, prot="read|write") for i in range(n)]
        t = time.monotonic()
        client.batch(batch)
        print(f"map requests, batched: {n / (time.monotonic() - t):.0f} per s")
        t = time.monotonic()
        for i in range(50):
            client.iova_to_phys(info.id, i << 12)
        print(f"single request round trip: {(time.monotonic() - t) / 50 * 1000:.1f} ms")
        t = time.monotonic()
        w = table.walk()
        print(f"host walk of {len(w.leaves)} leaves / {len(w.tables)} tables (paused): "
              f"{(time.monotonic() - t) * 1000:.1f} ms")
        slow = PmemsaveMemory(m.qmp, m.rundir, m.memory.base, m.memory.size)
        t = time.monotonic()
        for _ in range(20):
            slow.read(info.ttbr, 4096)
        print(f"pmemsave 4 KiB: {(time.monotonic() - t) / 20 * 1000:.2f} ms")
        t = time.monotonic()
        for _ in range(1000):
            m.memory.read(info.ttbr, 4096)
        print(f"shared-memory 4 KiB: {(time.monotonic() - t) / 1000 * 1e6:.1f} us")
        dma_figures(client, m)
        client.close()


def dma_figures(client: ModuleClient, m: Machine) -> None:
    """4 KiB to the device and back, 10 times: the module's timing (command written to run
    bit clear) and the request's round trip from the host."""
    assert m.memory is not None and m.qmp is not None
    bench = DmaBench(client, m.memory, m.qmp)
    info = client.create()
    table = GuestTable(client, info, m.memory, m.qmp)
    table.map(0x10_0000, bench.pa(0x10_0000), 0x1000)
    table.map(0x20_0000, bench.pa(0x20_0000), 0x1000)
    bench.attach(table)
    device_ns, host = [], []
    for i in range(10):
        for to_device, iova in ((True, 0x10_0000), (False, 0x20_0000)):
            t = time.monotonic()
            r = client.dma(info.id, iova, 0x1000, to_device)
            host.append(time.monotonic() - t)
            assert r.ret == 0, r.line
            device_ns.append(r.ns)
    print(f"DMA 4 KiB through the SMMU: {sum(device_ns) / len(device_ns) / 1e6:.1f} ms on the "
          f"device, {sum(host) / len(host) * 1000:.1f} ms per request from the host "
          f"({len(host)} transfers)")
    client.detach()


if __name__ == "__main__":
    main()
