"""Random legal map/unmap sequences against a Python model (hypothesis state machine), for
every granule and every page size it offers, and two guest processes mapping disjoint ranges of
one table at once.

Each step is one batch: a few maps and unmaps (with every size the granule allows, pgcounts that
cross table ends, unmaps of a larger size over smaller leaves, blocks over emptied tables), then
`iova_to_phys` at random offsets. Every reply is predicted before the batch is sent: refusals
from the model, mapped/unmapped prefixes from the one-table-per-call rule of io-pgtable-arm; after
the batch the whole table is walked from the host and compared with the model.

The iovas cluster around the table boundaries of every level (the end of a table of each leaf
size, near the end of the first table of the largest), so maps collide, cross ends and reuse
emptied tables often. Each test prints how many requests it checked per second.

Long runs: `--hypothesis-profile=long` (see tests/guest/conftest.py).
"""
from __future__ import annotations

import bisect
import threading
import time
from dataclasses import dataclass

import pytest
from hypothesis import settings, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule, run_state_machine_as_test

from harness.pgtable.lpae import Granule, granule_for
from harness.pgtable.model import Mapping, TableModel, calls, compare, table_span as span_of_table
from harness.pgtable.walker import Walk
from harness.guest.modclient import ModuleClient, Prot, Quirk, Reply, req

pytestmark = pytest.mark.guest

K4 = 0x1000
PA = 0x40_0000_0000
SETS = {"4K": 0x4020_1000, "16K": 0x0200_4000, "64K": 0x2001_0000, "64K-oas52": 0x2001_0000}
OAS = {"64K-oas52": 52}  # 48 for the others: the output addresses above 2^48 need 64K
PROTS = [Prot.READ, Prot.READ | Prot.WRITE, Prot.READ | Prot.CACHE, Prot.WRITE | Prot.NOEXEC,
         Prot.READ | Prot.MMIO | Prot.PRIV]
OPS_PER_STEP = (4, 12)  # maps, unmaps and fills per step (one batch, one walk)
MAX_FILL = 2048  # leaves a fill maps at most: 2 tables of 4K pages, 1 of 16K (none of 64K)
PROBES_PER_STEP = 4
DEVICE_PROBES = 8  # iovas the device reads at the end of each sequence (the third oracle)
EEXIST, ENOENT = -17, -2
ATTRIBUTES = 0xFFFF_0000_0000_0FFF  # descriptor bits outside the output address (and 64K's PA[51:48])
# (quirks, coherent_walk) per table: OUTER_WBWA only with a walk that is not coherent (io-pgtable
# refuses it with a coherent one), whose table pages io-pgtable maps and syncs for the device.
VARIANTS = [(0, True), (0, True), (Quirk.ARM_NS, True), (Quirk.ARM_HD, True),
            (Quirk.ARM_NS | Quirk.ARM_HD | Quirk.NO_WARN, True), (0, False), (Quirk.ARM_OUTER_WBWA, False),
            (Quirk.ARM_NS | Quirk.ARM_HD | Quirk.ARM_OUTER_WBWA, False)]


@dataclass(frozen=True)
class Geometry:
    granule: Granule
    sizes: tuple[int, ...]
    anchors: tuple[int, ...]  # table ends of every level, where the iovas cluster
    oas: int = 48

    @classmethod
    def of(cls, pgsizes: int, oas: int = 48) -> "Geometry":
        granule = granule_for(pgsizes)
        sizes = tuple(1 << b for b in range(64) if pgsizes >> b & 1)
        centre = span_of_table(granule, sizes[-1])
        anchors = {centre} | {centre + m * span_of_table(granule, s)
                              for s in sizes[:-1] for m in (-1, 1)}
        return cls(granule, sizes, tuple(sorted(anchors)), oas)

    def paddr(self, iova: int) -> int:
        """A paddr as aligned as the iova, different from it, inside the oas: above 2^48 with
        oas 52 (PA[51:48] then live in descriptor bits 15:12)."""
        return (1 << 50 if self.oas > 48 else PA) + (iova * 3) % (1 << 44)


class Leaves:
    """The model's leaves in iova order, for the overlap, tiling and translation questions a
    step asks (thousands of leaves once a step fills a whole table)."""

    def __init__(self, model: TableModel) -> None:
        self.model = model
        self.keys = sorted(model.leaves)

    def within(self, start: int, end: int) -> list[Mapping]:
        """The leaves overlapping [start, end), in order."""
        i = bisect.bisect_left(self.keys, start)
        if i and self.keys[i - 1] + self.model.leaves[self.keys[i - 1]].size > start:
            i -= 1
        out = []
        while i < len(self.keys) and self.keys[i] < end:
            out.append(self.model.leaves[self.keys[i]])
            i += 1
        return out

    def free(self, start: int, end: int) -> bool:
        return not self.within(start, end)

    def tiled(self, start: int, end: int, pgsize: int) -> bool:
        """What the module's checked unmap requires: leaves no larger than pgsize covering
        [start, end) exactly (none sticking out at either end)."""
        at = start
        for leaf in self.within(start, end):
            if leaf.iova != at or leaf.size > pgsize or leaf.iova + leaf.size > end:
                return False
            at = leaf.iova + leaf.size
        return at == end

    def phys(self, iova: int) -> int:
        found = self.within(iova, iova + 1)
        return found[0].paddr + iova - found[0].iova if found else 0


def attribute_problems(walk: Walk, model: TableModel, quirks: int) -> list[str]:
    """Each leaf's attributes as the Arm architecture encodes what its prot asked for (and the
    table's quirks: NS on every leaf; DBM on writable leaves only)."""
    problems, seen = [], set()
    for leaf in walk.leaves:
        want = model.leaves.get(leaf.iova)
        key = (leaf.desc.raw & ATTRIBUTES, want.prot if want else None)
        if want is None or key in seen:
            continue  # compare() reports a leaf the model lacks; identical bits checked once
        seen.add(key)
        prot, d = Prot(want.prot), leaf.desc
        writable = bool(prot & Prot.WRITE) or not prot & Prot.READ
        if prot & Prot.MMIO:
            memtype = leaf.memtype.kind == "device" and leaf.memtype.device == "nGnRE"
        elif prot & Prot.CACHE:
            memtype = leaf.memtype.cacheable
        else:
            memtype = (leaf.memtype.kind, leaf.memtype.inner, leaf.memtype.outer) == \
                ("normal", "nc", "nc")
        got = (d.read_only, d.unprivileged, d.uxn, d.pxn, d.af, d.ng, memtype, d.shareability,
               d.ns, d.dbm)
        expect = (not writable, not prot & Prot.PRIV, bool(prot & Prot.NOEXEC),
                  bool(prot & Prot.NOEXEC), True, True, True,
                  "inner-shareable" if prot & Prot.CACHE and not prot & Prot.MMIO
                  else "outer-shareable",
                  bool(quirks & Quirk.ARM_NS), bool(quirks & Quirk.ARM_HD) and writable)
        if got != expect:
            problems.append(f"iova {leaf.iova:#x} prot {prot.wire()} quirks {quirks:#x}: "
                            f"(ro, el0, uxn, pxn, af, ng, memtype ok, sh, ns, dbm) = {got}, "
                            f"expected {expect}: {leaf.describe()}")
    return problems[:20]


@dataclass
class Tally:
    requests: int = 0
    changes: int = 0  # of the requests, maps and unmaps (the rest are iova_to_phys probes)
    steps: int = 0
    batches: float = 0.0  # seconds in the module's batches
    walks: float = 0.0  # seconds walking and comparing


def _machine(table_factory, pgsizes: int, tally: Tally, bench=None, oas: int = 48):
    geo = Geometry.of(pgsizes, oas)
    small = geo.sizes[0]
    fills = 1 if geo.granule.size // 8 <= MAX_FILL else 0  # no 64K fills: 8192 leaves each

    class Sequences(RuleBasedStateMachine):
        @initialize(variant=st.sampled_from(VARIANTS))
        def setup(self, variant):
            quirks, coherent = variant
            self.table = table_factory(pgsizes=pgsizes, oas=oas, quirks=quirks,
                                       coherent_walk=coherent)
            assert self.table.info.oas == oas, self.table.info
            self.quirks = quirks
            self.model = TableModel()

        def plan_map(self, data) -> list[tuple[str, tuple]]:
            size = data.draw(st.sampled_from(geo.sizes + (small, small)), label="size")
            anchor = data.draw(st.sampled_from(geo.anchors), label="anchor")
            iova = (anchor // size + data.draw(st.integers(-4, 3), label="off")) * size
            count = data.draw(st.integers(1, 40 if size == small else 3), label="count")
            return self.plan_map_at(data, iova, size, count)

        def plan_fill(self, data) -> list[tuple[str, tuple]]:
            """Whole leaf tables side by side at an anchor, and often at once an unmap of the
            next size up over them (it frees each table: several entries in one call)."""
            span = span_of_table(geo.granule, small)
            tables = data.draw(st.sampled_from([2, 1] if 2 * span // small <= MAX_FILL else [1]),
                               label="tables")
            anchor = data.draw(st.sampled_from(geo.anchors), label="anchor")
            iova = (anchor // span + data.draw(st.integers(-tables, 0), label="off")) * span
            plan = self.plan_map_at(data, iova, small, tables * span // small)
            if plan[0][1][0] == 0 and data.draw(st.booleans(), label="free them"):
                plan += self.plan_unmap(data, iova, span)
            return plan

        def plan_map_at(self, data, iova: int, size: int, count: int) -> list[tuple[str, tuple]]:
            prot = data.draw(st.sampled_from(PROTS), label="prot")
            paddr = geo.paddr(iova)
            if not Leaves(self.model).free(iova, iova + size * count):
                return [(req("map", id=self.table.id, iova=iova, paddr=paddr, pgsize=size,
                             pgcount=count, prot=prot), (EEXIST, "check", 0))]
            self.model.map(iova, paddr, size, count, int(prot))
            return [(req("map", id=self.table.id, iova=i, paddr=paddr + i - iova, pgsize=size,
                         pgcount=n, prot=prot), (0, "pgtable", n * size))
                    for i, n in calls(geo.granule, iova, size, count)]

        def plan_unmap(self, data, at: int | None = None,
                       pgsize: int | None = None) -> list[tuple[str, tuple]]:
            """An unmap from a random leaf (or from `at`, with `pgsize`), of as many units as
            tile from there or fewer; refused by the module when they do not tile."""
            if not self.model.leaves:
                return []
            index = Leaves(self.model)
            if at is None or pgsize is None:
                leaf = self.model.leaves[data.draw(st.sampled_from(index.keys), label="leaf")]
                # the next size up twice as often: an unmap that meets (and frees) leaf tables
                larger = [s for s in geo.sizes if s > leaf.size][:1]
                pgsize = data.draw(st.sampled_from([s for s in geo.sizes if s >= leaf.size]
                                                   + larger), label="pgsize")
                at = leaf.iova
            start = at // pgsize * pgsize
            run = 1
            while run < 64 and index.tiled(start + run * pgsize, start + (run + 1) * pgsize,
                                           pgsize):
                run += 1
            # the whole run of what follows as often as any shorter count
            count = data.draw(st.just(run) | st.integers(1, run), label="count")
            if not index.tiled(start, start + count * pgsize, pgsize):
                return [(req("unmap", id=self.table.id, iova=start, pgsize=pgsize, pgcount=count),
                         (ENOENT, "check", 0))]
            self.model.unmap(start, count * pgsize)
            return [(req("unmap", id=self.table.id, iova=i, pgsize=pgsize, pgcount=n),
                     (0, "pgtable", n * pgsize))
                    for i, n in calls(geo.granule, start, pgsize, count)]

        def plan_probes(self, data) -> list[tuple[str, tuple]]:
            out = []
            index = Leaves(self.model)
            for _ in range(PROBES_PER_STEP):
                if index.keys and data.draw(st.booleans(), label="in a leaf"):
                    leaf = self.model.leaves[data.draw(st.sampled_from(index.keys), label="leaf")]
                    iova = leaf.iova + data.draw(st.integers(0, leaf.size - 1), label="offset")
                else:
                    anchor = data.draw(st.sampled_from(geo.anchors), label="anchor")
                    iova = anchor + data.draw(st.integers(-4 * geo.sizes[-1], 4 * geo.sizes[-1] - 1),
                                              label="offset")
                out.append((req("iova_to_phys", id=self.table.id, iova=iova),
                            (0, "", index.phys(iova))))
            return out

        @rule(data=st.data())
        def batch(self, data):
            plan = []
            kinds = [self.plan_map, self.plan_unmap] * 2 + [self.plan_fill] * fills
            for _ in range(data.draw(st.integers(*OPS_PER_STEP), label="ops")):
                plan += data.draw(st.sampled_from(kinds), label="op")(data)
            plan += self.plan_probes(data)
            started = time.monotonic()
            replies = self.table.client.batch([r for r, _ in plan])
            got = [(r.ret, r.src, _value(r)) for r in replies]
            tally.batches += time.monotonic() - started
            tally.requests += len(plan)
            tally.changes += sum(1 for r, _ in plan if not r.startswith("iova_to_phys"))
            tally.steps += 1
            wrong = [f"{request}: expected {want}, got {reply.line}"
                     for (request, want), g, reply in zip(plan, got, replies) if g != want]
            assert not wrong, "\n".join(wrong[:8])

        @invariant()
        def table_matches_model(self):
            if hasattr(self, "table"):
                started = time.monotonic()
                w = self.table.walk()
                problems = compare(w, self.model) + attribute_problems(w, self.model, self.quirks)
                tally.walks += time.monotonic() - started
                assert not problems, "\n".join(problems)

        def teardown(self):
            """The device reads through the final table: inside some mapped leaves and at some
            free iovas, as the model has them; it must agree with the host walk."""
            if bench is None or not hasattr(self, "table"):
                return
            index = Leaves(self.model)
            leaves = [self.model.leaves[k] for k in index.keys]
            mapped = [leaf.iova + leaf.size // 2 for leaf in leaves]
            free = [a for a in geo.anchors if index.free(a, a + small)]
            probes = (mapped[::max(1, len(mapped) // 5)][:5] + free)[:DEVICE_PROBES]
            problems = bench.disagreements(self.table, self.table.walk(), probes)
            assert not problems, "\n".join(problems)

    return Sequences


def _value(reply: Reply) -> int:
    for key in ("mapped", "unmapped", "phys"):
        if key in reply.fields:
            return reply.num(key)
    return 0


@pytest.mark.parametrize("gname", [pytest.param(n, marks=pytest.mark.granule(n.split("-")[0])) for n in SETS])
def test_random_sequences_match_the_model(pgtable, gname, capsys, dma_bench):
    tally = Tally()
    started = time.monotonic()
    # The 4K granule gets the profile's whole budget, the others half each.
    budget = settings(settings.default, max_examples=max(1, settings.default.max_examples
                                                         // (1 if gname == "4K" else 2)))
    oas = OAS.get(gname, 48)
    # QEMU's SMMU takes no table with a 52-bit IPS (test_dma checks that it is refused)
    device = dma_bench if oas <= 48 else None
    run_state_machine_as_test(_machine(pgtable, SETS[gname], tally, device, oas), settings=budget)
    wall = time.monotonic() - started
    with capsys.disabled():
        print(f"\nsequences {gname}: {tally.requests} requests checked ({tally.changes} maps "
              f"and unmaps) in {tally.steps} steps, {wall:.1f} s ({tally.requests / wall:.0f} "
              f"requests/s, {tally.changes / wall:.0f} maps and unmaps/s, "
              f"{tally.steps / wall:.1f} steps/s; {tally.batches:.1f} s in batches, "
              f"{tally.walks:.1f} s in walks)")
    assert tally.steps > 0, "no step ran"


@pytest.mark.vcpus(2)  # guest processes that truly run at once
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
