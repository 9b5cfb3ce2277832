"""Prints the figures issue notes quote: prepare (build or cache hit), boot-to-ready, request
throughput through the debugfs module, and host walk / memory-read costs.

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
        slow = PmemsaveMemory(m.qmp, m.rundir)
        t = time.monotonic()
        for _ in range(20):
            slow.read(info.ttbr, 4096)
        print(f"pmemsave 4 KiB: {(time.monotonic() - t) / 20 * 1000:.2f} ms")
        t = time.monotonic()
        for _ in range(1000):
            m.memory.read(info.ttbr, 4096)
        print(f"shared-memory 4 KiB: {(time.monotonic() - t) / 1000 * 1e6:.1f} us")
        client.close()


if __name__ == "__main__":
    main()
