"""The report formats of Linux 7.3.4 beyond the basic WARNING/BUG/Oops/panic, against golden logs
written from the sources' printk formats (see the table in harness/guest/splats.py): each report is
one splat of the right kind and title, its text runs to its end marker, and boot messages of the
same files that merely look like reports are not splats."""
from __future__ import annotations

from pathlib import Path

import pytest

from harness.guest.splats import KINDS, classify, kind_of

GOLDEN = Path(__file__).parent / "golden"


def lines(name: str) -> list[str]:
    return (GOLDEN / name).read_text().splitlines()


def kinds_titles(name: str) -> list[tuple[str, str]]:
    return [(s.kind, s.title) for s in classify(lines(name))]


def test_lock_imbalance_and_lock_debugging_reports_are_lockdep() -> None:
    splats = classify(lines("lock-imbalance-7.3.log"))
    assert [s.kind for s in splats] == ["lockdep"] * 7
    assert [s.title for s in splats] == [
        "WARNING: bad unlock balance detected!",
        "WARNING: held lock freed!",
        "WARNING: lock held when returning to user space!",
        "WARNING: sh/83 still has locks held!",
        "INFO: trying to register non-static key.",
        "DEBUG_LOCKS_WARN_ON(lock->magic != lock)",
        "BUG: spinlock already unlocked on CPU#0, sh/86",
    ]
    # Each starts at its own banner (the empty line and '=====' lockdep prints before the title)
    # and stops before the next one's.
    for s in splats[:4]:
        text = s.text.splitlines()
        assert text[0] == "" and set(text[1]) == {"="} and text[2] == s.title
        assert not set(text[-1]) <= {"=", ""}
    assert "but there are no more locks to release!" in splats[0].text
    assert "with a lock still held there!" in splats[1].text
    assert "you didn't initialize this object before use?" in splats[4].text
    # DEBUG_LOCKS_WARN_ON is a WARN(): cut here, the message, the WARNING line, to its end trace.
    warn = splats[5].text.splitlines()
    assert warn[0].startswith("------------[ cut here ]") and warn[2].startswith("WARNING: kernel/locking/mutex.c:")
    assert warn[-1].startswith("---[ end trace")
    assert ".magic: dead4ead" in splats[6].text


def test_lockups_hung_task_in_io_wait_and_expedited_rcu_stall() -> None:
    splats = classify(lines("lockups-7.3.log"))
    assert [s.kind for s in splats] == ["soft-lockup", "hard-lockup", "workqueue-lockup", "hung-task",
                                        "rcu-stall", "panic"]
    assert splats[0].title == "watchdog: BUG: soft lockup - CPU#1 stuck for 26s! [sh:91]"
    assert "pc : walk+0x4c/0x120 [iopt_hil]" in splats[0].text
    assert splats[1].title == "watchdog: CPU0: Watchdog detected hard LOCKUP on cpu 1"
    assert splats[2].title.endswith("stuck for 33s!") and "pending: vmstat_shepherd" in splats[2].text
    assert "blocked in I/O wait for more than 30 seconds" in splats[3].title
    # The blocker lines and "INFO: lockdep is turned off." belong to the hung-task report.
    assert "is blocked on a mutex likely owned by task sh:91" in splats[3].text
    assert "INFO: lockdep is turned off." in splats[3].text
    assert "detected expedited stalls" in splats[4].title
    assert splats[5].text.splitlines()[-1].startswith("---[ end Kernel panic")


def test_kmemleak_one_splat_per_object_then_the_summary_then_api_misuse() -> None:
    splats = classify(lines("kmemleak-objects-7.3.log"))
    assert [s.kind for s in splats] == ["kmemleak"] * 4
    first, percpu, summary, misuse = splats
    assert first.title == "kmemleak: unreferenced object 0xfff0000002d4c000 (size 4096):"
    assert first.text.splitlines()[-1] == "kmemleak:     map+0x120/0x300 [iopt_hil]"
    assert percpu.title.startswith("kmemleak: unreferenced object (percpu) 0x0000600fbfa01230")
    assert percpu.text.splitlines()[-1].endswith("more object(s) with the same backtrace")
    assert "iopt-hil: scan requested" not in percpu.text  # ends at its last indented line
    assert summary.text == "kmemleak: 4 new suspected memory leaks (see /sys/kernel/debug/kmemleak)"
    assert misuse.title.startswith("kmemleak: Partially freeing unknown object")
    assert "kmemleak_free_part" in misuse.text  # its stack dump is not indented: runs to the next splat


def test_reports_printed_through_warn_are_named_by_their_message() -> None:
    splats = classify(lines("warn-reports-7.3.log"))
    assert [s.kind for s in splats] == ["refcount", "debugobjects", "debugobjects", "list-corruption",
                                        "warning", "warning", "ubsan", "list-corruption", "panic"]
    assert splats[0].title == "refcount_t: underflow; use-after-free."
    assert splats[1].title.startswith("ODEBUG: free active (active state 0) object: ")
    assert "object type: timer_list" in splats[1].title
    assert splats[2].title.startswith("ODEBUG: object ffff800080963a40 is NOT on stack")
    assert splats[3].title.startswith("list_add corruption. prev->next should be next")
    for s in splats[:7]:  # cut here .. end trace, and one WARNING (or UBSAN) line each
        text = s.text.splitlines()
        assert text[-1].startswith("---[ end trace"), s.title
        assert sum(line.startswith(("WARNING: ", "UBSAN: ")) for line in text) == 1, s.title
    assert splats[0].text.startswith("------------[ cut here ]")
    assert "WARNING: lib/refcount.c:28 at refcount_warn_saturate" in splats[0].text
    # A plain WARN's own message line now belongs to its text.
    assert "partial large IOPTE unmap at iova 0x200000" in splats[4].text
    assert splats[5].title.startswith("WARNING: at stats_dump+0x30/0x90")
    assert "index 512 is out of range" in splats[6].text  # UBSAN's "---[ end trace ]---" ends it
    # CONFIG_BUG_ON_DATA_CORRUPTION: the message, then kernel BUG and the Oops, one report.
    bug = splats[7]
    assert bug.title.startswith("list_del corruption. prev->next should be")
    assert "kernel BUG at lib/list_debug.c:62!" in bug.text and "Internal error: Oops - BUG" in bug.text


def test_stack_overflow_then_its_panic() -> None:
    assert kinds_titles("stack-overflow-7.3.log") == [
        ("stack-overflow", "Insufficient stack space to handle exception!"),
        ("panic", "Kernel panic - not syncing: kernel stack overflow"),
    ]
    (overflow, _) = classify(lines("stack-overflow-7.3.log"))
    assert "Overflow stack: [0x" in overflow.text and "pc : walk_level+0x14/0x120" in overflow.text


def test_stack_protector_panic_is_stack_corruption() -> None:
    (splat,) = classify(lines("stack-protector-7.3.log"))
    assert splat.kind == "stack-corruption" and "run_batch+0x1f8/0x200" in splat.title
    assert splat.text.splitlines()[-1].startswith("---[ end Kernel panic")


def test_bad_page_state_and_mm_counters() -> None:
    splats = classify(lines("bad-page-7.3.log"))
    assert [s.kind for s in splats] == ["bad-page"] * 3
    assert splats[0].title == "BUG: Bad page state in process sh  pfn:4a3c1"
    assert "page dumped because: PAGE_FLAGS_CHECK_AT_FREE flag(s) set" in splats[0].text
    assert splats[1].title.startswith("BUG: Bad rss-counter state mm:")
    assert splats[2].title == "BUG: non-zero pgtables_bytes on freeing mm: 4096"


def test_boot_messages_that_look_like_reports_are_not_splats() -> None:
    assert classify(lines("boot-debug-lookalikes-7.3.log")) == []


def test_the_clean_boot_still_has_no_splats() -> None:
    assert classify(lines("boot-clean-7.3.log")) == []


@pytest.mark.parametrize("line,kind", [
    ("WARNING: possible irq lock inversion dependency detected", "lockdep"),
    ("WARNING: hardirq-safe -> hardirq-unsafe lock order detected", "lockdep"),
    ("WARNING: chain_key collision", "lockdep"),
    ("WARNING: Nested lock was not taken", "lockdep"),
    ("WARNING: bad contention detected!", "lockdep"),
    ("BUG: MAX_STACK_TRACE_ENTRIES too low!", "lockdep"),
    ("BUG: MAX_LOCKDEP_CHAIN_HLOCKS too low!", "lockdep"),
    ("BUG: key fff0000002c1d0a8 has not been registered!", "lockdep"),
    ("BUG: looking up invalid subclass: 9", "lockdep"),
    ("BUG: rwlock wrong owner on CPU#1, sh/80, fff0000002c1d0a8", "lockdep"),
    ("BUG: scheduling in a non-blocking section: sh/80/1", "lockdep"),
    ("BUG: assuming atomic context at drivers/iommu/io-pgtable-arm.c:400", "lockdep"),
    ("BUG: using smp_processor_id() in preemptible [00000000] code: sh/80", "lockdep"),
    ("BUG: workqueue leaked atomic, lock or RCU: kworker/0:1[12]", "lockdep"),
    ("[   61.0] INFO: task sh:91 blocked for more than 122 seconds.", "hung-task"),
    ("INFO: rcu_tasks detected stalls on tasks:", "rcu-stall"),
    ("rcu: INFO: rcu_preempt self-detected stall on CPU", "rcu-stall"),
    ("kmemleak: unreferenced object (phys) 0x48000000 (size 4096):", "kmemleak"),
    ("kmemleak: Found object by alias at 0xfff0000002d4c010", "kmemleak"),
    ("kmemleak: Cannot insert 0xfff0000002d4c000 into the object search tree (overlaps existing)",
     "kmemleak"),
    ("ODEBUG: activate not available (active state 0) object: fff0 object type: work_struct hint: f+0x0/0x4",
     "debugobjects"),
    ("ODEBUG: selftest wrong state: 1 != 3", "debugobjects"),
    ("refcount_t: saturated; leaking memory.", "refcount"),
    ("refcount_t: addition on 0; use-after-free.", "refcount"),
    ("refcount_t: decrement hit 0; leaking memory.", "refcount"),
    ("refcount_t: unknown saturation event!?", "refcount"),
    ("list_add corruption. next is NULL.", "list-corruption"),
    ("list_add double add: new=fff0, prev=fff0, next=fff1.", "list-corruption"),
    ("list_del corruption, fff0000002c1d0a8->next is LIST_POISON1 (dead000000000100)", "list-corruption"),
    ("BUG: IRQ stack guard page was hit at 0000000012345678 (stack is 00000000..00000001)",
     "stack-overflow"),
    ("BUG: Bad page map in process sh  pte:0000000048000f43 pmd:48001003", "bad-page"),
    ("BUG: Bad page cache in process sh  pfn:48000", "bad-page"),
    ("BUG: Bad page state: 3 messages suppressed", "bad-page"),
    ("SError Interrupt on CPU1, code 0x00000000be000011 -- SError", "oops"),
    ("NMI watchdog: Watchdog detected hard LOCKUP on cpu 1", "hard-lockup"),
    ("BUG: soft lockup - CPU#0 stuck for 22s! [sh:91]", "soft-lockup"),
    ("kernel BUG at lib/list_debug.c:62!", "bug"),
    ("BUG: arch topology borken", "bug"),
    # Lookalikes: boot banners and ordinary messages of the same subsystems.
    ("kmemleak: Kernel memory leak detector initialized (mem pool available: 15854)", None),
    ("kmemleak: Memory pool empty, consider increasing CONFIG_DEBUG_KMEMLEAK_MEM_POOL_SIZE", None),
    ("kmemleak: Cannot allocate a kmemleak_object structure", None),
    ("ODEBUG: selftest passed", None),
    ("ODEBUG: Out of memory. ODEBUG disabled", None),
    ("iopt-hil: refcount_t: underflow; use-after-free. (quoted by a test)", None),
    ("lkdtm: attempting bad refcount_inc() overflow", None),
    ("lkdtm: list_add() corruption not detected!", None),
    ("Kernel command line: console=ttyAMA0 softlockup_panic=1 nosoftlockup", None),
    ("INFO: lockdep is turned off.", None),
    ("INFO: task sh:92 is blocked on a mutex likely owned by task sh:91.", None),
    ("rcu: INFO: Stall ended before state dump start", None),
    ("Future hung task reports are suppressed, see sysctl kernel.hung_task_warnings", None),
    ("watchdog: Hard watchdog permanently disabled", None),
    ("Lock dependency validator: Copyright (c) 2006 Red Hat, Inc., Ingo Molnar", None),
    ("... MAX_LOCKDEP_KEYS:        8192", None),
    ("KASAN: null-ptr-deref in range [0x0000000000000000-0x0000000000000007]", None),
])
def test_single_lines(line: str, kind: str | None) -> None:
    assert kind_of(line) == kind


def test_every_kind_is_documented_in_the_module_table() -> None:
    import harness.guest.splats as splats
    doc = splats.__doc__ or ""
    for kind, _ in KINDS:
        if kind not in ("iommu-fault", "rust-panic"):  # not kernel/ formats: smmu driver, Rust
            assert f"-> {kind}" in doc, kind
