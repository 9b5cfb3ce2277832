"""Fuzz the module's grammar on a live guest (issue 12): random and adversarial request lines
and batches (random verbs, keys and values, huge numbers, overlong lines, invalid UTF-8, NULs,
many lines). Every reply must be an errno or a result in the grammar, there must be no splat
and no crash (the plugin fails the test on either), and afterwards the module's record of each
table must be exactly what the host walks.

The `_unchecked` verbs and `trigger` are left out: they exist to reach the C WARN paths and the
harness's own fault handling. So are the device verbs (`attach`, `dma`, ...): a device write
lands wherever the table says, and only the DMA tests' own mappings point into RAM the kernel
does not use. Default: a few seconds. Soak: `IOPT_HIL_FUZZ_EXAMPLES=5000`.
"""
from __future__ import annotations

import os
import re
import time

import pytest
from hypothesis import HealthCheck, assume, given, settings, strategies as st

from harness.guest.modclient import check_contract, parse_reply
from harness.pgtable.tables import GuestTable
from tests.guest.test_hardening import record_matches_walk

pytestmark = pytest.mark.guest

EXAMPLES = int(os.environ.get("IOPT_HIL_FUZZ_EXAMPLES", "200"))
K4, M2, G1 = 0x1000, 0x20_0000, 0x4000_0000
VERBS = ["version", "create", "destroy", "list", "info", "map", "unmap", "iova_to_phys",
         "record", "frobnicate", "map_", "MAP", ""]
KEYS = ["id", "iova", "paddr", "pgsize", "pgcount", "prot", "ias", "oas", "pgsizes", "quirks",
        "start", "what", "", "x"]
EDGES = [0, 1, 11, 12, 47, 48, 49, 64, K4, K4 - 1, M2, G1, 1 << 31, (1 << 31) - 1, 1 << 32,
         (1 << 32) - 1, 1 << 48, (1 << 48) - K4, 1 << 63, (1 << 64) - 1, 0x40201000]
# Rust's `str::trim` whitespace among ASCII; lines with other control bytes are not counted.
_RUST_WS = " \t\n\x0b\x0c\r"

numbers = st.one_of(st.sampled_from(EDGES), st.integers(0, 600),
                    st.integers(0, 512).map(lambda n: n * K4), st.integers(0, (1 << 64) - 1))


def _number_text(draw) -> str:
    n = draw(numbers)
    return draw(st.sampled_from([f"{n:#x}", str(n), f"{n:#x}", "0x" + "f" * 40, "-1", "0x",
                                 "1" * 25, f"{n:#X}", "read|write", "none", "cache|noexec"]))


@st.composite
def line(draw, table_id: int, clean: bool) -> bytes:
    kind = draw(st.integers(0, 4 if clean else 9))
    if kind <= 4:  # mostly well-formed checked requests on the fuzz table, odd numbers
        verb = draw(st.sampled_from(["map", "map", "unmap", "iova_to_phys", "record", "info"]))
        pgsize = draw(st.sampled_from([K4, K4, M2, G1, 0x2000, 0, 1 << 40, draw(numbers)]))
        words = [verb, f"id={table_id}"]
        if verb in ("map", "unmap", "iova_to_phys"):
            slot = draw(st.integers(0, 64))
            iova = draw(st.one_of(st.just(slot * pgsize if pgsize else slot * K4), numbers))
            words.append(f"iova={iova:#x}")
        if verb in ("map", "unmap"):
            count = draw(st.one_of(st.integers(1, 40), numbers))
            words += [f"pgsize={pgsize:#x}", f"pgcount={count:#x}"]
        if verb == "map":
            paddr = draw(st.one_of(st.just(0x40_0000_0000), numbers))
            prot = draw(st.sampled_from(["read", "read|write", "write|noexec", "cache|read",
                                         "mmio|priv|read", "none", "0x3f", "0xffffffff"]))
            words += [f"paddr={paddr:#x}", f"prot={prot}"]
        if verb == "record" and draw(st.booleans()):
            words.append(f"start={draw(numbers):#x}")
        order = draw(st.permutations(words[1:]))
        return " ".join([words[0], *order]).encode()
    if kind <= 7:  # random verbs and key=value words
        verb = draw(st.sampled_from(VERBS))
        if verb == "destroy":  # never the fuzz table; any table the fuzz made, or none
            return f"destroy id={draw(st.integers(table_id + 1, table_id + 40))}".encode()
        words = [verb]
        for _ in range(draw(st.integers(0, 7))):
            key = draw(st.sampled_from(KEYS))
            words.append(draw(st.sampled_from([f"{key}={_number_text(draw)}", key, f"{key}=",
                                               f"={_number_text(draw)}", f"{key}=={key}"])))
        return " ".join(words).encode()
    if kind == 8:  # overlong words and lines
        return draw(st.sampled_from([b"version " + b"x" * 5000, b"map " + b"id=1 " * 800,
                                     b"#" * 9000, b"info id=" + b"9" * 3000]))
    return draw(st.binary(min_size=1, max_size=40))  # any bytes: invalid UTF-8, NUL, CR


@st.composite
def batch(draw, table_id: int) -> bytes:
    if draw(st.integers(0, 15)) == 0:  # many lines in one write
        return b"\n".join([b"version", b"list"] * draw(st.integers(500, 2100)))
    clean = draw(st.booleans())  # a batch with one bad line is refused whole: half are clean
    lines = draw(st.lists(line(table_id, clean), min_size=1, max_size=25))
    return draw(st.sampled_from([b"\n", b"\r\n", b"\n\n"])).join(lines)


def _requests(data: bytes) -> int | None:
    """How many requests the module counts in `data`, or None if that is not plain to see."""
    if any(b < 0x20 and b not in b"\t\n\r" or b >= 0x7f for b in data):
        return None
    return sum(1 for ln in data.decode().split("\n")
               if ln.strip(_RUST_WS) and not ln.strip(_RUST_WS).startswith("#"))


def test_fuzz_requests_and_batches(pgtable, module, guest):
    table = pgtable()
    before = set(module.list())
    stats = {"writes": 0, "requests": 0, "refused": 0}
    started = time.monotonic()

    @settings(max_examples=EXAMPLES, deadline=None, derandomize=EXAMPLES <= 100,
              suppress_health_check=list(HealthCheck))
    @given(data=batch(table.id))
    def fuzz(data: bytes) -> None:
        # The shell makes no write() of nothing: the module would see no batch at all, and a
        # read would show whatever this shell's last batch left (replies stay until the next write).
        assume(data != b"")
        status, lines = module.raw_bytes(data)
        stats["writes"] += 1
        expected = _requests(data)
        stats["requests"] += expected or 1
        if status != 0:
            stats["refused"] += 1
            assert len(lines) <= 1, lines[:3]
            for ln in lines:
                assert re.fullmatch(r'(batch-error|parse-error line=\d+) ret=-\d+ why="[^"]*"', ln), ln
            return
        replies = [parse_reply(ln) for ln in lines]
        if expected is not None:
            assert len(replies) == expected, (data[:200], lines[:5])
        assert [r.index for r in replies] == list(range(len(replies))), lines[:5]
        for r in replies:
            assert -4095 <= r.ret <= 0, r.line
            assert r.src in ("", "check", "pgtable", "module"), r.line
            check_contract(r.line, r)
            if r.verb == "map" and r.src == "pgtable" and r.ret == 0:
                assert r.num("mapped") > 0, r.line

    fuzz()
    elapsed = time.monotonic() - started
    print(f"\nfuzz: {stats['writes']} writes, ~{stats['requests']} requests "
          f"({stats['refused']} writes refused) in {elapsed:.1f} s: "
          f"{stats['requests'] / elapsed:.0f} requests/s, {stats['writes'] / elapsed:.1f} writes/s")
    made = [i for i in module.list() if i not in before]
    tables = [table] + [GuestTable(module, module.info(i), guest.memory, guest.qmp) for i in made]
    try:
        for t in tables:
            problems = record_matches_walk(module, t)
            assert not problems, f"table {t.id}: " + "\n".join(problems)
    finally:
        for i in made:
            module.destroy(i)
