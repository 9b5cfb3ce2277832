"""Kernel-message classifier: turns console lines into splat events (WARNING, BUG, Oops, panic,
KASAN/KFENCE/KCSAN/UBSAN reports, lockdep, RCU stalls, hung tasks, lockups, kmemleak, ODEBUG,
refcount_t, list corruption, stack overflow/corruption, bad pages, SMMU faults, Rust panics).

Each pattern sits beside the kind it names. A splat's title is the line that names it; its text
runs from that line (or from the `------------[ cut here ]------------` or `=====` banner just
above it) to its end marker: `---[ end trace ... ]---`, the closing `=====` of a KASAN/KFENCE/KCSAN
report, the last indented `kmemleak:` line of a leak report; else to the next splat, or a bound.

Report-starting formats covered, from Linux 7.3.4 (file:line  format -> kind). pr_fmt prefixes
are shown. WARN(1, fmt)/CHECK_DATA_CORRUPTION print `cut here`, then the message, then the
`WARNING:` line (arm64 has no HAVE_ARCH_BUG_FORMAT; x86's report_bug() keeps the same order), so
the message names the splat and the WARNING/kernel BUG/Oops lines after it belong to it.

  kernel/locking/lockdep.c:2006,3066,4061,4127  "WARNING: possible circular locking dependency
        detected" / "possible recursive locking detected" / "inconsistent lock state" /
        "possible irq lock inversion dependency detected"                         -> lockdep
  lockdep.c:2609  "WARNING: %s-safe -> %s-unsafe lock order detected"              -> lockdep
  lockdep.c:3689,5092,6113  "WARNING: chain_key collision" / "Nested lock was not taken" /
        "bad contention detected!"                                                 -> lockdep
  lockdep.c:5336,6780,6842,6911  lock imbalance: "WARNING: bad unlock balance detected!" /
        "held lock freed!" / "%s/%d still has locks held!" / "lock held when returning to user
        space!"                                                                    -> lockdep
  lockdep.c:6937  "WARNING: suspicious RCU usage"                                  -> lockdep
  lockdep.c:1024  "INFO: trying to register non-static key."                       -> lockdep
  lockdep.c:581,1375,1455,3796,3816,914,5019  "BUG: MAX_STACK_TRACE_ENTRIES too low!",
        "BUG: MAX_LOCKDEP_{KEYS,ENTRIES,CHAINS,CHAIN_HLOCKS} too low!", "BUG: looking up invalid
        subclass: %u", "BUG: key %px has not been registered!"                     -> lockdep
  include/linux/debug_locks.h:31  WARN "DEBUG_LOCKS_WARN_ON(%s)"                   -> lockdep
  kernel/locking/spinlock_debug.c:61,151  "BUG: spinlock %s on CPU#%d, %s/%d",
        "BUG: rwlock %s on CPU#%d, ..."                                            -> lockdep
  kernel/sched/core.c:6079,6111,9241,9286,9318  "BUG: scheduling while atomic", "BUG: scheduling
        in a non-blocking section", "BUG: sleeping function called from invalid context",
        "BUG: assuming atomic context", "BUG: assuming non migratable context"      -> lockdep
  lib/smp_processor_id.c:43  "BUG: using %s%s() in preemptible [%08x] code"        -> lockdep
  kernel/workqueue.c:3410  "BUG: workqueue leaked atomic, lock or RCU: %s[%d]"     -> lockdep
  kernel/workqueue.c:8005  "BUG: workqueue lockup - pool" + " stuck for %us!"      -> workqueue-lockup
  kernel/watchdog.c:884  "watchdog: BUG: soft lockup - CPU#%d stuck for %us! [%s:%d]" -> soft-lockup
  kernel/watchdog.c:267  "watchdog: CPU%u: Watchdog detected hard LOCKUP on cpu %u" -> hard-lockup
  kernel/hung_task.c:254  "INFO: task %s:%d blocked%s for more than %ld seconds."  -> hung-task
  kernel/rcu/tree_stall.h:657,734, tree_exp.h:570, tasks.h:1112  "rcu: INFO: %s detected stalls
        on CPUs/tasks:", "... self-detected stall on CPU", "... detected expedited stalls",
        "INFO: rcu_tasks detected stalls on tasks:"                                -> rcu-stall
  mm/kmemleak.c:385  "kmemleak: unreferenced object%s 0x%08lx (size %zu):" (one per object,
        verbose/"dump=on" scans)                                                   -> kmemleak
  mm/kmemleak.c:2125  "kmemleak: %d new suspected memory leaks (see ...)"          -> kmemleak
  mm/kmemleak.c:466,772,917,989,1014,1036,1065,1088,1237  kmemleak_warn() API misuse (with a
        stack dump): "Found object by alias", "Cannot insert 0x%lx into the object search
        tree", "Partially freeing unknown object", ... "unknown object", "Scan area larger
        than object"                                                               -> kmemleak
  lib/debugobjects.c:629  WARN "ODEBUG: %s %s (active state %u) object: %p object type: %s
        hint: %pS"                                                                 -> debugobjects
  lib/debugobjects.c:666,669  "ODEBUG: object %p is [NOT ]on stack %p, but [NOT ]annotated."
  lib/debugobjects.c:1367-1381  WARN "ODEBUG: selftest {object not found,wrong state,fixups
        failed,warnings failed}"                                                   -> debugobjects
  lib/refcount.c:11-34,87  WARN "refcount_t: {saturated; leaking memory,addition on 0;
        use-after-free,underflow; use-after-free,decrement hit 0; leaking memory,unknown
        saturation event!?}."                                                      -> refcount
  lib/list_debug.c:26-66  WARN/BUG "list_add corruption. ...", "list_add double add: ...",
        "list_del corruption[.,] ..."                                              -> list-corruption
  arch/arm64/kernel/traps.c:910  "Insufficient stack space to handle exception!"   -> stack-overflow
  arch/x86/kernel/traps.c:553  "BUG: %s stack guard page was hit at %px ..."        -> stack-overflow
  kernel/panic.c:1214  panic "stack-protector: Kernel stack is corrupted in: %pB"  -> stack-corruption
  mm/page_alloc.c:634,643, mm/memory.c:511,644, mm/filemap.c:157, kernel/fork.c:645,653
        "BUG: Bad page state in process", "BUG: Bad page map", "BUG: Bad page cache",
        "BUG: Bad rss-counter state", "BUG: non-zero pgtables_bytes on freeing mm"   -> bad-page
  mm/kasan/report.c:247,619  "BUG: KASAN: %s in %pS", "BUG: KASAN: invalid-access" -> kasan
  mm/kfence/report.c:252-279  "BUG: KFENCE: {out-of-bounds,use-after-free,memory corruption,
        invalid,invalid free} ..."                                                 -> kfence
  kernel/kcsan/report.c:436,441  "BUG: KCSAN: %s in %ps / %ps"                      -> kcsan
  lib/ubsan.c:225  "UBSAN: %s in %s:%d:%d" ... "---[ end trace ]---"               -> ubsan
  kernel/panic.c:1090,1094  "WARNING: %s:%d at %pS, CPU#%d: %s/%d", "WARNING: at %pS, ..." -> warning
  arch/arm64/kernel/traps.c:182  "Internal error: %s: %016lx [#%d] SMP"            -> oops
  arch/arm64/mm/fault.c:350  "Unable to handle kernel %s at virtual address %016lx" -> oops
  arch/arm64/kernel/traps.c:937  "SError Interrupt on CPU%d, code 0x%016lx -- %s"  -> oops
  lib/bug.c  "kernel BUG at %s:%u!"; any other "BUG: ..."                           -> bug
  kernel/panic.c:648  "Kernel panic - not syncing: %s"                             -> panic
  drivers/iommu/arm/arm-smmu-v3/arm-smmu-v3.c  "arm-smmu-v3 %s: event: F_..." / "event 0x%02x
        received:"                                                                 -> iommu-fault
  images/module/hw.rs (our module drives the SMMU)  "iopt_hil: smmu event %s (0x%02x) sid=..
        iova=.. read|write", "iopt_hil: smmu event queue overflowed"               -> iommu-fault

Not splats: boot banners of the same files ("kmemleak: Kernel memory leak detector initialized",
"ODEBUG: selftest passed", "watchdog: ... permanently disabled", "kcsan: strict mode configured",
"INFO: lockdep is turned off." inside another report, "rcu: INFO: Stall ended before state dump
start", "Future hung task reports are suppressed", kmemleak/ODEBUG out-of-memory notices, which
only switch the checker off). "KASAN: %s in range [...]" (mm/kasan/report.c:677) is a hint inside
an Oops, not a report of its own.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable, Sequence

# printk prefix: optional "[    1.234567]" timestamp and optional "[  T12]"/"[  C0]" caller id.
_PREFIX = re.compile(r"^\s*(?:\[\s*\d+\.\d+\])?\s*(?:\[\s*[TC]\d+\])?\s*")

# Order matters: the first match names the splat (lockdep's "WARNING: possible ..." before WARNING,
# KASAN/KFENCE/bad-page/lockup "BUG: ..." before plain BUG, stack-protector before panic).
# Every pattern is anchored and has no nested unbounded quantifier: linear on hostile lines.
KINDS: list[tuple[str, re.Pattern[str]]] = [
    ("lockdep", re.compile(
        r"^WARNING: (possible (circular|recursive) locking|possible irq lock inversion"
        r"|inconsistent lock state|suspicious RCU usage|lock held when returning"
        r"|bad unlock balance detected|held lock freed|bad contention detected"
        r"|Nested lock was not taken|chain_key collision|\w+-safe -> \w+-unsafe lock order"
        r"|.{1,64}/\d+ still has locks held!)"
        r"|^INFO: trying to register non-static key"
        r"|^BUG: (sleeping function called from invalid context|scheduling while atomic"
        r"|scheduling in a non-blocking section|assuming (atomic|non migratable) context"
        r"|using \S+ in preemptible|MAX_LOCKDEP|MAX_STACK_TRACE_ENTRIES too low"
        r"|key \S+ has not been registered|looking up invalid subclass|spinlock |rwlock "
        r"|workqueue leaked atomic)"
        r"|^DEBUG_LOCKS_WARN_ON\(")),
    ("kasan", re.compile(r"^BUG: KASAN: ")),
    ("kfence", re.compile(r"^BUG: KFENCE: ")),
    ("kcsan", re.compile(r"^BUG: KCSAN: ")),
    ("ubsan", re.compile(r"^UBSAN: ")),
    ("kmemleak", re.compile(
        r"^kmemleak: (\d+ new suspected memory leaks|unreferenced object"
        r"|Found object by alias|Cannot insert 0x|Scan area larger than object"
        r"|(Partially freeing|Not resetting the checksum of an|Adding scan area to"
        r"|Setting excess_ref on|Not scanning|Updating stack trace for) unknown object)")),
    ("rcu-stall", re.compile(r"^rcu: INFO: \S+ (self-)?detected (expedited )?stalls?"
                             r"|^INFO: rcu_\S+ (self-)?detected (expedited )?stall")),
    ("hung-task", re.compile(r"^INFO: task \S+ blocked( in I/O wait)? for more than \d+ seconds")),
    ("soft-lockup", re.compile(r"^(watchdog: )?BUG: soft lockup - CPU#\d+ stuck for ")),
    ("hard-lockup", re.compile(r"^((NMI )?watchdog: )?(CPU\d+: )?Watchdog detected hard LOCKUP on cpu ")),
    ("workqueue-lockup", re.compile(r"^BUG: workqueue lockup - pool")),
    ("bad-page", re.compile(r"^BUG: (Bad page (state|map|cache)|Bad rss-counter state"
                            r"|non-zero pgtables_bytes on freeing mm)")),
    ("debugobjects", re.compile(
        r"^ODEBUG: (\w+ (not available|\w+) \(active state \d+\) object: "
        r"|selftest (object not found|wrong state|fixups failed|warnings failed)"
        r"|object \S+ is (NOT )?on stack \S+, but (NOT )?annotated)")),
    ("refcount", re.compile(r"^refcount_t: (saturated; leaking memory|addition on 0; use-after-free"
                            r"|underflow; use-after-free|decrement hit 0; leaking memory"
                            r"|unknown saturation event)")),
    ("list-corruption", re.compile(r"^list_(add|del) corruption[.,] |^list_add double add: ")),
    ("stack-overflow", re.compile(r"^Insufficient stack space to handle exception"
                                  r"|^BUG: \w+ stack guard page was hit at ")),
    ("stack-corruption", re.compile(r"^Kernel panic - not syncing: stack-protector: "
                                    r"Kernel stack is corrupted in: ")),
    # "WARNING: CPU: 0 PID: 1 at file:line func+0x..", or 7.x's "WARNING: file:line at func+0x..",
    # or "WARNING: at func+0x.." (no file); \S+ (no spaces) keeps the match linear on a hostile line.
    ("warning", re.compile(r"^WARNING: (CPU: \d+ PID: \d+ at |\S+ at \S+\+0x|at \S+\+0x)")),
    ("oops", re.compile(r"^Internal error: |^Unable to handle kernel |^Oops|^SError Interrupt on CPU\d")),
    ("bug", re.compile(r"^(kernel BUG at |BUG: )")),
    ("panic", re.compile(r"^Kernel panic - not syncing")),
    ("iommu-fault", re.compile(r"^arm-smmu-v3 \S+: event: F_\w+ |^arm-smmu-v3 \S+: event 0x[0-9a-f]+ received"
                               r"|^iopt_hil: smmu event (\w+ \(0x[0-9a-f]+\) |queue overflowed)")),
    ("rust-panic", re.compile(r"^rust_kernel: panicked at ")),
]
# "---[ end trace 0000000000000000 ]---", UBSAN's "---[ end trace ]---", the panic's own end.
END_TRACE = re.compile(r"---\[ end (trace( [0-9a-f]+)? \]|Kernel panic)")
CUT_HERE = "------------[ cut here ]------------"
# KASAN, KFENCE and KCSAN reports close with a line of '='; lockdep's and theirs open with one.
_BANNER_END = re.compile(r"^={20,}\s*$")
_BANNERED = ("kasan", "kfence", "kcsan")
# A kmemleak report's own lines: "kmemleak:   comm ...", "kmemleak:     backtrace frame".
# (kmemleak_warn() API-misuse reports are followed by a plain stack dump instead.)
_KMEMLEAK_REPORT = re.compile(r"^kmemleak: (\d+ new suspected|unreferenced object)")
_KMEMLEAK_BODY = re.compile(r"^kmemleak:  ")
# Reports printed through WARN()/BUG(): the WARNING/kernel BUG line follows the message.
_WARN_MESSAGE = ("debugobjects", "refcount", "list-corruption")
_WARN_WINDOW = 3  # message, [cut here,] WARNING
MAX_LINES = 200
_CUT_LOOKBACK = 8  # cut here, then up to a few lines of WARN message before the WARNING


@dataclass(frozen=True)
class Splat:
    kind: str
    title: str  # the line that names it, prefix stripped
    start: int  # index of its first line (title, or the cut-here/banner above it) in `classify`'s input
    text: str

    def summary(self) -> str:
        return f"{self.kind}: {self.title}"


def strip_prefix(line: str) -> str:
    return _PREFIX.sub("", line, count=1)


def kind_of(line: str) -> str | None:
    body = strip_prefix(line)
    for kind, pattern in KINDS:
        if pattern.search(body):
            return kind
    return None


def classify(lines: Sequence[str]) -> list[Splat]:
    """Every splat in `lines`, in order."""
    splats: list[Splat] = []
    floor = 0  # first line not part of an earlier splat
    i = 0
    while i < len(lines):
        kind = kind_of(lines[i])
        if kind is None:
            i += 1
            continue
        title = strip_prefix(lines[i])
        end = i + 1
        while end < len(lines) and end - i < MAX_LINES:
            if END_TRACE.search(lines[end - 1]) and end - 1 > i:
                break
            if kind in _BANNERED and end - 1 > i and _BANNER_END.search(strip_prefix(lines[end - 1])):
                break
            if (kind == "kmemleak" and _KMEMLEAK_REPORT.search(title)
                    and not _KMEMLEAK_BODY.search(strip_prefix(lines[end]))):
                break
            if kind_of(lines[end]) is not None and not _continues(kind, title, lines[end], end - i):
                end = _header_before(lines, end, i + 1)  # the next splat's header is its own
                break
            end += 1
        start = _header_before(lines, i, floor)
        body = [strip_prefix(line) for line in lines[start:end]]
        splats.append(Splat(kind, title, start, "\n".join(body)))
        i = floor = end
    return splats


def _header_before(lines: Sequence[str], i: int, floor: int) -> int:
    """Where the splat named at line i begins: its `cut here` line a few lines above (WARN's own
    message sits between), or its opening `=====` banner (lockdep, KASAN, KFENCE, KCSAN) with the
    empty line lockdep prints before it; else i. Never above `floor`."""
    if i - 1 >= floor and _BANNER_END.search(strip_prefix(lines[i - 1])):
        start = i - 1
        if start - 1 >= floor and strip_prefix(lines[start - 1]).strip() == "":
            start -= 1
        return start
    for j in range(i - 1, max(floor, i - _CUT_LOOKBACK) - 1, -1):
        body = strip_prefix(lines[j])
        if body.startswith(CUT_HERE):
            return j
        if kind_of(lines[j]) is not None:
            break
    return i


def _continues(kind: str, title: str, line: str, offset: int) -> bool:
    """'Unable to handle kernel ...' and 'kernel BUG at' are followed by their own
    'Internal error: Oops' line, and a Rust panic by the BUG it turns into: one report each.
    A WARN()-printed report (refcount_t, ODEBUG, list corruption, DEBUG_LOCKS_WARN_ON) is
    followed by its WARNING (or, with BUG_ON_DATA_CORRUPTION, kernel BUG and Oops) lines."""
    nxt = kind_of(line)
    return ((kind in ("oops", "bug") and nxt == "oops")
            or (kind == "rust-panic" and nxt in ("bug", "oops"))
            or (kind == "iommu-fault" and nxt == "iommu-fault" and "event: F_" in line)
            or (_is_warn_message(kind, title) and nxt in ("warning", "bug") and offset <= _WARN_WINDOW)
            or (kind == "list-corruption" and nxt == "oops"))


def _is_warn_message(kind: str, title: str) -> bool:
    return kind in _WARN_MESSAGE or (kind == "lockdep" and title.startswith("DEBUG_LOCKS_WARN_ON("))


def matches(splat: Splat, kind: str, pattern: str | None = None) -> bool:
    return splat.kind == kind and (pattern is None or re.search(pattern, splat.text) is not None)


def matching(splats: Iterable[Splat], kind: str, pattern: str | None = None) -> list[Splat]:
    return [s for s in splats if matches(s, kind, pattern)]
