"""Hardening of the guest module (issue 12, items 1, 2, 4 and 5): requests that grow without
bound are answered with an errno, a refused write never leaves an older batch's replies to be
read, more writers than reply slots never read each other's (or stale) replies, concurrent use of
one table is safe for every verb pair, and a nonsense `mapped` from io-pgtable is never recorded.
"""
from __future__ import annotations

import random
import re
import threading

import pytest

from harness.guest.modclient import ModuleClient, Prot, Quirk, parse_reply, req
from harness.pgtable.model import TableModel, compare

pytestmark = pytest.mark.guest

K4, M2 = 0x1000, 0x20_0000
PA = 0x40_0000_0000
E2BIG, ENOENT, EEXIST, EBUSY, ENOSPC, EINVAL = -7, -2, -17, -16, -28, -22
MAX_BATCH = 1 << 20
MAX_REQUESTS = 4096
MAX_RUNS = 8192


def _stale(lines: list[str]) -> list[str]:
    """Lines that answer the earlier `version` batch."""
    return [line for line in lines if line.startswith("0 version")]


def _refusal(lines: list[str]) -> int | None:
    """The errno of a refused write's `batch-error` line, if it left one."""
    for line in lines:
        m = re.match(r"batch-error ret=(-\d+)", line)
        if m:
            return int(m.group(1))
    return None


def test_an_oversized_write_leaves_no_stale_reply(module):
    """E2BIG (more than MAX_BATCH bytes): the previous batch's replies are not read back."""
    module.request("version").ok()
    status, lines = module.raw("#" * (MAX_BATCH + 1))
    assert status != 0
    assert not _stale(lines), lines
    assert _refusal(lines) == E2BIG, lines


def test_invalid_utf8_leaves_no_stale_reply(module):
    module.request("version").ok()
    status, lines = module.raw_bytes(b"version\n\xff\xfe version\n")
    assert status != 0
    assert not _stale(lines), lines
    assert _refusal(lines) == EINVAL, lines


def test_a_malformed_batch_replaces_the_previous_reply(module):
    module.request("version").ok()
    status, lines = module.raw("version\nfrobnicate id=1")
    assert status != 0
    assert not _stale(lines), lines
    assert any(line.startswith("parse-error line=2 ret=-22") for line in lines), lines


def test_too_many_requests_in_one_batch_are_refused_with_e2big(module):
    """Unbounded before: 100,000 requests reached kmalloc's MAX_PAGE_ORDER WARN."""
    module.request("version").ok()
    status, lines = module.raw("\n".join(["version"] * 100_000))
    assert status != 0
    assert not _stale(lines), lines[:3]
    assert _refusal(lines) == E2BIG, lines[:3]
    assert len(module.batch(["version"] * MAX_REQUESTS)) == MAX_REQUESTS  # the limit itself is fine


def test_a_reply_too_large_is_cut_with_e2big_per_request(module):
    """Each `list` names every table: 4,000 of them with 200 tables is megabytes of reply."""
    made = [r.ok().num("id") for r in module.batch(["create"] * 200)]
    try:
        replies = module.batch(["list"] * 4000)
        assert len(replies) == 4000
        assert all(r.ret in (0, E2BIG) for r in replies), {r.ret for r in replies}
        cut = [r for r in replies if r.ret == E2BIG]
        assert cut and all(r.src == "module" for r in cut), cut[:1]
        first_cut = replies.index(cut[0])
        assert all(r.ret == E2BIG for r in replies[first_cut:]), "a request ran after the cut"
    finally:
        module.batch([f"destroy id={i}" for i in made])


def test_runs_per_table_are_bounded_with_enospc(pgtable, module):
    table = pgtable()
    for first in range(0, MAX_RUNS, MAX_REQUESTS):  # separate pages: one run each
        replies = module.batch([req("map", id=table.id, iova=2 * i * K4, paddr=PA, pgsize=K4,
                                    pgcount=1, prot="read") for i in range(first, first + MAX_REQUESTS)])
        assert all(r.ret == 0 for r in replies), [r.line for r in replies if r.ret][:3]
    r = table.map(2 * MAX_RUNS * K4, PA, K4)
    assert (r.ret, r.src, r.mapped) == (ENOSPC, "check", 0), r
    # Freeing one whole run makes room again; splitting one needs a run more, and is refused.
    assert table.unmap(0, K4) == K4
    assert table.map(2 * MAX_RUNS * K4, PA, K4).ret == 0
    assert module.request(req("unmap", id=table.id, iova=2 * K4, pgsize=K4, pgcount=1)).ret == 0
    assert len(module.record(table.id)) == MAX_RUNS - 1
    assert len(table.walk().leaves) == MAX_RUNS - 1


WRITERS = 72  # more than the module's 64 reply slots, all alive at once


@pytest.mark.vcpus(2)  # guest processes that truly run at once
def test_more_writers_than_reply_slots_never_read_a_wrong_reply(module):
    """Writer i writes i+1 `version` requests, waits until every writer has written, then reads:
    it must read exactly its own reply, or have had its write refused (EBUSY)."""
    # They wait on a FIFO that this shell holds open for writing (so their opens never block)
    # and closes once all have written: every waiting `read` then sees end of file at once.
    script = f"""
rm -rf /tmp/slots; mkdir -p /tmp/slots; mkfifo /tmp/slots/go; exec 3<>/tmp/slots/go
i=0
while [ $i -lt {WRITERS} ]; do
  (
    exec 4</tmp/slots/go 3>&-
    b=version; n=0
    while [ $n -lt $i ]; do b="$b
version"; n=$((n+1)); done
    if echo "$b" > /sys/kernel/debug/iopt_hil/ctl 2>/dev/null; then ok=1; else ok=0; fi
    touch /tmp/slots/w$i
    read -r _ <&4
    c=0; bad=0
    while IFS= read -r l; do
      case "$l" in *" version ret=0 protocol="*) c=$((c+1));; *) bad=$((bad+1));; esac
    done < /sys/kernel/debug/iopt_hil/ctl
    echo "R $i $ok $c $bad"
  ) &
  i=$((i+1))
done
while [ $(ls /tmp/slots | wc -l) -lt {WRITERS + 1} ]; do sleep 0.05; done
exec 3>&-
wait
"""
    results = {}
    for line in module.shell(script):
        if line.startswith("R "):
            _, i, ok, count, bad = line.split()
            results[int(i)] = (int(ok), int(count), int(bad))
    assert len(results) == WRITERS, results
    wrong = {i: r for i, r in results.items() if r[0] and (r[1], r[2]) != (i + 1, 0)}
    assert not wrong, f"writers that read a reply not their own (i: ok, count, other): {wrong}"
    refused = [i for i, r in results.items() if not r[0]]
    assert refused, "more live writers than slots, yet none was refused"
    assert not [i for i in refused if results[i][1]], "a refused writer read a reply"
    assert WRITERS - len(refused) >= 60, f"only {WRITERS - len(refused)} writers got a slot"
    # Once they have exited, their slots are free again.
    assert module.request("version").ret == 0
    assert _version_from_a_new_process(module) == 0


def _version_from_a_new_process(module) -> int:
    out = module.shell("( echo version > /sys/kernel/debug/iopt_hil/ctl && "
                       "while IFS= read -r l; do echo \"$l\"; done < /sys/kernel/debug/iopt_hil/ctl )")
    return parse_reply(out[0]).ret


def test_unchecked_map_with_nonsense_mapped_records_nothing(pgtable, module):
    """pgcount 0xffffffff is -1 inside io-pgtable: it maps nothing and reports a `mapped` near
    2^64. Recording it poisoned the record (and the next checked map overflowed: a guest panic)."""
    table = pgtable()
    r = table.map(K4, PA, K4, 0xFFFF_FFFF, unchecked=True)
    assert r.mapped > 0xFFFF_FFFF * K4 or r.ret != 0, r  # what io-pgtable-arm 7.3 reports
    ok = table.map(0, PA, K4, 4)  # before the fix: `iova + size` of the phantom run overflowed
    assert (ok.ret, ok.mapped) == (0, 4 * K4), ok
    reply = module.request(req("map_unchecked", id=table.id, iova=4 * M2, paddr=PA, pgsize=K4,
                               pgcount=0xFFFF_FFFF, prot="read"))
    assert reply.num("recorded") == 0 and "why" in reply.fields, reply.line
    assert module.record(table.id) == [(0, 4 * K4, K4)]
    assert [leaf.iova for leaf in table.walk().leaves] == [0, K4, 2 * K4, 3 * K4]


# Concurrency: every verb pair on one table from several guest processes.
SPAN = 4 * M2
CLIENTS, ROUNDS, OPS = 4, 6, 60


def _random_op(rng: random.Random, table: int) -> str:
    verb = rng.choice(["map", "map", "map_unchecked", "unmap", "unmap", "unmap_unchecked",
                       "unmap_2m", "unmap_unchecked_2m", "iova_to_phys"])
    block = rng.randrange(SPAN // M2) * M2
    if verb.endswith("_2m"):
        return req(verb[:-3], id=table, iova=block, pgsize=M2, pgcount=1)
    first = rng.randrange(512)
    count = rng.randint(1, min(16, 512 - first))  # never across a 2M boundary: no short results
    iova = block + first * K4
    if verb == "iova_to_phys":
        return req(verb, id=table, iova=iova + rng.randrange(K4))
    if verb.startswith("map"):
        return req(verb, id=table, iova=iova, paddr=PA + iova, pgsize=K4, pgcount=count,
                   prot="read|write")
    return req(verb, id=table, iova=iova, pgsize=K4, pgcount=count)


def _check_reply(request: str, reply) -> str | None:
    """None if `reply` is a consistent answer to `request`, else why not."""
    args = dict(w.split("=", 1) for w in request.split()[1:])
    size = int(args.get("pgsize", "0"), 0) * int(args.get("pgcount", "0"), 0)
    verb, ret, src = reply.verb, reply.ret, reply.src
    if verb == "iova_to_phys":
        iova = int(args["iova"], 0)
        if ret == EBUSY and src == "check":
            return None
        if ret == 0 and reply.num("phys") in (0, PA + iova):
            return None
    elif verb == "map":
        if (ret, src) in ((EEXIST, "check"), (EBUSY, "check")):
            return None
        if (ret, src) == (0, "pgtable") and reply.num("mapped") == size:
            return None
    elif verb == "map_unchecked":
        if (ret, src) == (EBUSY, "check") or (ret, src) == (EEXIST, "pgtable"):
            return None
        if (ret, src) == (0, "pgtable") and reply.num("mapped") == size:
            return None
    elif verb == "unmap":
        if (ret, src) in ((ENOENT, "check"), (EBUSY, "check")):
            return None
        if (ret, src) == (0, "pgtable") and reply.num("unmapped") == size:
            return None
    elif verb == "unmap_unchecked":
        if (ret, src) == (EBUSY, "check"):
            return None
        if (ret, src) == (0, "pgtable") and 0 <= reply.num("unmapped") <= size:
            return None
    return f"{request} -> {reply.line}"


def record_matches_walk(client: ModuleClient, table) -> list[str]:
    """The module's record against the host's walk of the table: same leaves."""
    recorded = {}
    for iova, size, pgsize in client.record(table.id):
        for off in range(0, size, pgsize):
            recorded[iova + off] = pgsize
    walked = {leaf.iova: leaf.size for leaf in table.walk().leaves}
    problems = [f"recorded, not in the table: {i:#x}+{s:#x}" for i, s in sorted(recorded.items())
                if walked.get(i) != s]
    problems += [f"in the table, not recorded: {i:#x}+{s:#x}" for i, s in sorted(walked.items())
                 if recorded.get(i) != s]
    return problems[:20]


@pytest.mark.vcpus(2)  # guest processes that truly run at once
def test_every_verb_pair_on_one_table_from_several_processes(pgtable, ssh, module):
    """Mixed checked, unchecked and iova_to_phys requests from four guest processes on one
    table (QUIRK_NO_WARN: unchecked collisions fail silently). Every reply must be consistent
    (a checked map/unmap that succeeds does all of it; iova_to_phys sees nothing or the one paddr
    ever mapped there), no splat, and afterwards the record is exactly what the host walks."""
    table = pgtable(quirks=Quirk.NO_WARN)
    clients = [ModuleClient(ssh) for _ in range(CLIENTS)]
    errors: list[str] = []

    def work(n: int, client: ModuleClient) -> None:
        rng = random.Random(1000 + n)
        try:
            for _ in range(ROUNDS):
                ops = [_random_op(rng, table.id) for _ in range(OPS)]
                for request, reply in zip(ops, client.batch(ops)):
                    why = _check_reply(request, reply)
                    if why:
                        errors.append(why)
        except BaseException as exc:  # reported below, from the test's thread
            errors.append(repr(exc))

    threads = [threading.Thread(target=work, args=(n, c)) for n, c in enumerate(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    for c in clients:
        c.close()
    assert not errors, "\n".join(errors[:20])
    problems = record_matches_walk(module, table)
    assert not problems, "\n".join(problems)


MAX_TABLES = 256


def test_tables_are_bounded_with_enospc(module):
    """The 257th live table is refused before io-pgtable allocates it; one destroyed makes room."""
    before = module.list()
    made = []
    try:
        replies = module.batch([req("create", ias=32, oas=40, pgsizes=0x40201000)
                                for _ in range(MAX_TABLES - len(before))])
        made = [r.num("id") for r in replies if r.ret == 0]
        assert len(made) == MAX_TABLES - len(before), [r.line for r in replies if r.ret][:3]
        r = module.request(req("create", ias=32, oas=40, pgsizes=0x40201000))
        assert (r.ret, r.src) == (ENOSPC, "check") and "too many tables" in r.line, r
        assert len(module.list()) == MAX_TABLES
        module.destroy(made.pop()).ok()
        again = module.request(req("create", ias=32, oas=40, pgsizes=0x40201000)).ok()
        made.append(again.num("id"))
    finally:
        for r in module.batch([req("destroy", id=t) for t in made]):
            assert r.ret == 0, r
    assert module.list() == before
