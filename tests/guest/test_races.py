"""Concurrency where io-pgtable is lock-free (issue #14 item 6).

`__arm_lpae_map()` installs a missing intermediate table with a compare-and-swap
(`arm_lpae_install_table`, `cmpxchg64_relaxed`): two mappers that both found the entry empty
both allocate a table, one wins, and the loser must use the winner's table and free its own.
The module runs io-pgtable calls outside its registry lock (only busy ranges keep requests apart,
and the ranges here are disjoint pages), so several guest processes on several vCPUs really are
inside `__arm_lpae_map()` at once. The maps are `map_unchecked`: legal by construction (each page
mapped once, by one process), they skip the record scan a checked map makes under the registry
lock before its call, so the clients' io-pgtable calls start microseconds apart instead of one
scan apart (the checked maps raced so rarely that a lost race went unseen in most runs).

Each round, every process maps its own page of the same fresh regions in the same order, all
starting together at a barrier, so that they keep meeting at the same empty entries at every
level. Afterwards the walk must equal the model (a lost install loses a leaf), hold exactly one
table per region and level (nothing orphaned, nothing reached twice), and the allocator's count
of table pages must equal what the walks hold, exactly (a loser that keeps its table leaks one).
"""
from __future__ import annotations

import os
import threading
import time

import pytest

from harness.guest.modclient import ModuleClient, Prot, req
from harness.pgtable.model import TableModel, compare
from harness.pgtable.pagecount import PageCounter, table_pages

pytestmark = pytest.mark.guest

K4 = 0x1000
PA = 0x40_0000_0000
STRIDE = 1 << 39  # one L0 entry (512 GiB): every region needs a new L1, L2 and L3 table
REGIONS = 128  # per round; ias 48 has 512 L0 entries
# 8 rounds let a table installed with a plain store instead of the cmpxchg survive `mutate`
# on 3 Dec 2026; 64 (~18 s) killed it. Soak with more.
ROUNDS = int(os.environ.get("IOPT_HIL_RACE_ROUNDS", "64"))
CLIENTS = 4
GO = "/tmp/iopt-hil-race-go"


def _start(clients: list[ModuleClient], table_id: int,
           go: str) -> tuple[list[BaseException], list[threading.Thread]]:
    """Every client c maps page c of each region, all waiting at a barrier: each guest shell
    says it is there (a file `go-c`) and spins until the file `go` appears, so they leave it
    within microseconds of each other."""
    errors: list[BaseException] = []

    def work(c: int, client: ModuleClient) -> None:
        try:
            replies = client.batch(
                [req("map_unchecked", id=table_id, iova=k * STRIDE + c * K4, paddr=PA + c * K4,
                     pgsize=K4, pgcount=1, prot="read|write") for k in range(REGIONS)],
                before=f": > {go}-{c}; while [ ! -e {go} ]; do :; done")
            bad = [r.line for r in replies if (r.ret, r.num("mapped")) != (0, K4)]
            assert not bad, bad[:4]
        except BaseException as exc:  # reported by the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(c, cl)) for c, cl in enumerate(clients)]
    for t in threads:
        t.start()
    return errors, threads


def _release(starter: ModuleClient, go: str, clients: int, timeout: float = 30.0) -> None:
    """Creates `go` once every client is at the barrier."""
    deadline = time.monotonic() + timeout
    ready = f"ls {go}-* 2>/dev/null | wc -l"
    while int(starter.shell(ready)[0]) < clients:
        assert time.monotonic() < deadline, "the clients never reached the barrier"
        time.sleep(0.01)
    starter.shell(f": > {go}")


@pytest.mark.vcpus(2)  # guest processes that truly run at once
def test_processes_racing_to_install_the_same_tables(pgtable, module, ssh):
    cpus = int(ssh.run("grep -c '^processor' /proc/cpuinfo").check().stdout)
    assert cpus >= 2, f"the guest has {cpus} vCPU: no two mappers can run at once"
    clients = [ModuleClient(ssh) for _ in range(CLIENTS)]
    starter = ModuleClient(ssh)  # a shell of its own: the test's module client stays clean
    pages = PageCounter(ssh)
    base = pages.settled()
    walks = []
    try:
        for round_ in range(ROUNDS):
            table = pgtable()
            go = f"{GO}-{round_}"
            errors, threads = _start(clients, table.id, go)
            _release(starter, go, CLIENTS)
            for t in threads:
                t.join(120)
            starter.shell(f"rm -f {go} {go}-*")
            assert not errors, errors
            model = TableModel()
            for k in range(REGIONS):
                for c in range(CLIENTS):
                    model.map(k * STRIDE + c * K4, PA + c * K4, K4, 1, int(Prot.READ | Prot.WRITE))
            w = table.walk()
            problems = compare(w, model)
            assert not problems, f"round {round_}:\n" + "\n".join(problems)
            per_level = {lvl: len([t for t in w.tables if t.level == lvl]) for lvl in (1, 2, 3)}
            assert per_level == {1: REGIONS, 2: REGIONS, 3: REGIONS}, per_level
            walks.append(w)
        held = sum(table_pages(w) for w in walks)
        after = pages.settled()
    finally:
        for c in clients + [starter]:
            c.close()
        pages.close()
    assert after - base == held, \
        f"nr_iommu_pages grew by {after - base} pages, the walks hold {held}: " \
        f"{after - base - held} table pages leaked (lost installs that kept their table)"
