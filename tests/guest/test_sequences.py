"""Random legal map/unmap sequences against a Python model (hypothesis state machine), and two
guest processes mapping disjoint ranges of one table at once. After every step the whole table
is walked from the host and compared with the model.

Long runs: `--hypothesis-profile=long` (see tests/guest/conftest.py).
"""
from __future__ import annotations

import threading

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule, run_state_machine_as_test

from harness.pgtable.model import TableModel, compare
from harness.guest.modclient import ModuleClient, Prot, req

pytestmark = pytest.mark.guest

K4, K64, M2 = 0x1000, 0x1_0000, 0x20_0000
PA = 0x40_0000_0000
SPAN = 8 * M2  # the iova window the sequences play in: small, so they collide often


DEVICE_PROBES = 8  # iovas the device reads at the end of each sequence (the third oracle)


def _machine(table_factory, bench=None):
    class Sequences(RuleBasedStateMachine):
        @initialize()
        def setup(self):
            self.table = table_factory()
            self.model = TableModel()

        @rule(slot=st.integers(0, SPAN // K4 - 1), size=st.sampled_from([K4, K4, K64, M2]),
              count=st.integers(1, 40), prot=st.sampled_from([Prot.READ, Prot.READ | Prot.WRITE,
                                                               Prot.READ | Prot.CACHE, Prot.WRITE | Prot.NOEXEC]))
        def map(self, slot, size, count, prot):
            pgsize = M2 if size == M2 else K4  # K64 means "16 pages of 4K", not a 64K page
            iova = (slot * K4) // pgsize * pgsize
            count = min(count, 2) if pgsize == M2 else count
            if iova + pgsize * count > SPAN:
                return
            free = self.model.free(iova, pgsize * count)
            r = self.table.map(iova, PA + iova, pgsize, count, prot)
            if not free:
                assert (r.ret, r.src, r.mapped) == (-17, "check", 0), r
                return
            done = r.mapped
            while r.ret == 0 and done < pgsize * count:  # short success: retry the rest
                r = self.table.map(iova + done, PA + iova + done, pgsize, count - done // pgsize, prot)
                done += r.mapped
            assert (r.ret, done) == (0, pgsize * count), r
            self.model.map(iova, PA + iova, pgsize, count, int(prot))

        @rule(data=st.data())
        def unmap(self, data):
            if not self.model.leaves:
                return
            start = data.draw(st.sampled_from(sorted(self.model.leaves)))
            leaf = self.model.leaves[start]
            run = 1
            while start + run * leaf.size in self.model.leaves and \
                    self.model.leaves[start + run * leaf.size].size == leaf.size and run < 64:
                run += 1
            count = data.draw(st.integers(1, run))
            done = 0
            while done < leaf.size * count:
                got = self.table.unmap(start + done, leaf.size, count - done // leaf.size)
                assert got > 0, f"unmap made no progress at {start + done:#x}"
                done += got
            self.model.unmap(start, leaf.size * count)

        @invariant()
        def table_matches_model(self):
            if hasattr(self, "table"):
                problems = compare(self.table.walk(), self.model)
                assert not problems, "\n".join(problems)

        def teardown(self):
            """The device reads through the final table: some mapped leaves (at an offset
            inside) and some free iovas of the window, as the model has them."""
            if bench is None or not hasattr(self, "table"):
                return
            mapped = [start + leaf.size // 2 for start, leaf in sorted(self.model.leaves.items())]
            free = [i for i in range(0, SPAN, M2 // 2) if self.model.free(i, K4)]
            probes = (mapped[::max(1, len(mapped) // 5)][:5] + free[:DEVICE_PROBES])[:DEVICE_PROBES]
            problems = bench.disagreements(self.table, self.table.walk(), probes)
            assert not problems, "\n".join(problems)

    return Sequences


def test_random_sequences_match_the_model(pgtable, dma_bench):
    run_state_machine_as_test(_machine(pgtable, dma_bench))


def test_two_guest_processes_map_disjoint_ranges_at_once(pgtable, ssh):
    table = pgtable()
    clients = [ModuleClient(ssh), ModuleClient(ssh)]  # two guest shells: two processes
    bases = [0, 0x4000_0000]
    errors: list[BaseException] = []

    def work(client: ModuleClient, base: int) -> None:
        try:
            for round_ in range(4):
                batch = [req("map", id=table.id, iova=base + (round_ * 256 + i) * K4,
                             paddr=PA + base + (round_ * 256 + i) * K4, pgsize=K4, pgcount=1,
                             prot="read|write") for i in range(256)]
                replies = client.batch(batch)
                assert all(r.ret == 0 and r.num("mapped") == K4 for r in replies), replies[:3]
                client.batch([req("unmap", id=table.id, iova=base + (round_ * 256 + i) * K4,
                                  pgsize=K4, pgcount=1) for i in range(0, 256, 2)])
        except BaseException as exc:  # reported below, from the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(c, b)) for c, b in zip(clients, bases)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    for c in clients:
        c.close()
    assert not errors, errors
    model = TableModel()
    for base in bases:
        for n in range(1024):
            if n % 256 % 2 == 1:
                model.map(base + n * K4, PA + base + n * K4, K4, 1, int(Prot.READ | Prot.WRITE))
    problems = compare(table.walk(), model)
    assert not problems, "\n".join(problems)
