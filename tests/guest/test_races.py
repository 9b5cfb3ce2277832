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

Each round, every process maps its own page of the same fresh regions of the round's own table in
the same order, all starting together at a barrier, so that they keep meeting at the same empty
entries at every level. The rounds run inside the guest, one command for all of them: the host
only hands out the batches, then reads every reply, walks every table and counts the pages
(a round driven from the host cost ~130 ms of SSH round trips and spinning barrier shells, ten
times the round itself). Afterwards each table's walk must equal the model (a lost install loses
a leaf), hold exactly one table per region and level (nothing orphaned, nothing reached twice),
and the allocator's count of table pages must equal what the walks hold, exactly (a loser that
keeps its table leaks one).
"""
from __future__ import annotations

import os
import re

import pytest

from harness.guest.guest_tools import DEBUGFS_CTL
from harness.guest.modclient import Prot, check_contract, parse_reply, req
from harness.pgtable.model import TableModel, compare
from harness.pgtable.pagecount import PageCounter, table_pages

pytestmark = pytest.mark.guest

K4 = 0x1000
PA = 0x40_0000_0000
STRIDE = 1 << 39  # one L0 entry (512 GiB): every region needs a new L1, L2 and L3 table
REGIONS = 128  # per round; ias 48 has 512 L0 entries
# 8 rounds let a table installed with a plain store instead of the cmpxchg survive `mutate`
# on 3 Dec 2026; 64 killed it. Soak with more (at most the module's 256 tables, less the
# suite's).
ROUNDS = int(os.environ.get("IOPT_HIL_RACE_ROUNDS", "64"))
CLIENTS = 4
ROUND_MARK = re.compile(r"^@@ (\d+) (\d+)$")

# One guest command runs every round. Client c (a background subshell; its batch, with `@` for
# the table id, in B) marks its arrival at round t with a file go-t-c and spins until all
# CLIENTS are there, so that they leave the barrier microseconds apart; then it writes the
# round's batch and reads its replies back in the same process (a subshell that becomes `cat`
# keeps the writer's pid, which is how the module routes replies). Each round's replies follow
# a `@@ <table> <client>` line; a refused write leaves `@@W <status>`.
_CLIENT = r"""
client() {
  c=$1; shift
  for t in "$@"; do
    : > "$d/go-$t-$c"
    while set -- "$d"/go-$t-?; [ $# -lt %(clients)d ]; do :; done
    echo; echo "@@ $t $c"
    ( echo "${B//@/$t}" > %(ctl)s || { echo "@@W $?"; exit 0; }; exec cat %(ctl)s )
  done
}
d=$(mktemp -d /tmp/iopt-hil-race.XXXXXX) || exit 1
"""


def _batch(client: int) -> str:
    """Client `client`'s maps of one round: its own page of every region, table id `@`."""
    return "\n".join(req("map_unchecked", id="@", iova=k * STRIDE + client * K4,
                         paddr=PA + client * K4, pgsize=K4, pgcount=1, prot="read|write")
                     for k in range(REGIONS))


def _script(tables: list[int]) -> str:
    ids = " ".join(str(t) for t in tables)
    clients = "".join(f"B='{_batch(c)}'; client {c} {ids} > \"$d/out-{c}\" 2>&1 < /dev/null &\n"
                      for c in range(CLIENTS))
    reads = " ".join(f'"$d/out-{c}"' for c in range(CLIENTS))
    return (_CLIENT % {"clients": CLIENTS, "ctl": DEBUGFS_CTL} + clients
            + f"wait; cat {reads}; rm -rf \"$d\"\n")


def _replies(out: str, tables: list[int]) -> dict[tuple[int, int], list[str]]:
    """Reply lines per (table, client), as the guest printed them."""
    rounds: dict[tuple[int, int], list[str]] = {}
    current: list[str] = []
    for line in out.splitlines():
        m = ROUND_MARK.match(line)
        if m:
            current = rounds.setdefault((int(m.group(1)), int(m.group(2))), [])
        elif line:
            current.append(line)
    missing = [(t, c) for t in tables for c in range(CLIENTS) if (t, c) not in rounds]
    assert not missing, f"rounds the guest never ran (table, client): {missing[:8]}\n{out[-2000:]}"
    return rounds


def _check_replies(rounds: dict[tuple[int, int], list[str]]) -> None:
    """Every map answered Ok with one page mapped, in order; any other line is shown."""
    bad = []
    for (table, client), lines in sorted(rounds.items()):
        expected = [f"{k} map_unchecked ret=0 src=pgtable mapped=0x1000" for k in range(REGIONS)]
        if lines != expected:
            for line in lines:
                if not line.startswith("@@W"):
                    check_contract("map_unchecked", parse_reply(line))
            wrong = [line for line in lines if line not in expected] or lines[REGIONS:]
            bad.append(f"table {table} client {client}: {len(lines)} replies, "
                       f"e.g. {wrong[:2] or 'too few'}")
    assert not bad, "\n".join(bad[:10])


@pytest.mark.vcpus(2)  # guest processes that truly run at once
def test_processes_racing_to_install_the_same_tables(pgtable, ssh):
    cpus = int(ssh.run("grep -c '^processor' /proc/cpuinfo").check().stdout)
    assert cpus >= 2, f"the guest has {cpus} vCPU: no two mappers can run at once"
    with PageCounter(ssh) as pages:
        base = pages.exact()
        tables = pgtable.many(ROUNDS)
        ids = [t.id for t in tables]
        out = ssh.run("sh -s", stdin=_script(ids).encode(), timeout=120 + 4 * ROUNDS).check().stdout
        _check_replies(_replies(out, ids))
        model = TableModel()
        for k in range(REGIONS):
            for c in range(CLIENTS):
                model.map(k * STRIDE + c * K4, PA + c * K4, K4, 1, int(Prot.READ | Prot.WRITE))
        held = 0
        for table in tables:
            w = table.walk()
            problems = compare(w, model)
            assert not problems, f"table {table.id}:\n" + "\n".join(problems)
            per_level = {lvl: len([t for t in w.tables if t.level == lvl]) for lvl in (1, 2, 3)}
            assert per_level == {1: REGIONS, 2: REGIONS, 3: REGIONS}, (table.id, per_level)
            held += table_pages(w)
        after = pages.exact()
    assert after - base == held, \
        f"nr_iommu_pages grew by {after - base} pages, the walks hold {held}: " \
        f"{after - base - held} table pages leaked (lost installs that kept their table)"
