"""Progress of long steps, counted from a log as it grows: what counts as a step, the ETA, the
expected count taken from the previous build, and the plain every-15-s lines."""
from __future__ import annotations

import time

from harness.build.kbuild import COLD_STEPS, expected_steps
from harness.build.progress import (BOOTSTRAP_STEP, KBUILD_STEP, LogMonitor, StepCounter,
                                    StepProgress, clock, periodic_lines)

KBUILD_LOG = b"""\
### kernel: make -C /tree O=/out ARCH=arm64 LLVM=1 -j2 Image modules
make[1]: Entering directory '/out'
  SYNC    include/config/auto.conf
  HOSTCC  scripts/basic/fixdep
  CC      kernel/fork.o
  RUSTC L rust/core.o
  BINDGEN rust/bindings/bindings_generated.rs
  AR      lib/lib.a
  LD      vmlinux.o
/tree/drivers/iommu/io-pgtable-arm.c:42:5: warning: unused variable 'x' [-Wunused-variable]
   42 |     int x;
      |         ^
  OBJCOPY arch/arm64/boot/Image
make[1]: Leaving directory '/out'
"""


def test_kbuild_step_lines_count_and_diagnostics_do_not():
    counter = StepCounter(KBUILD_STEP)
    assert counter.feed(KBUILD_LOG) == 8


def test_lines_split_across_reads_count_once():
    counter = StepCounter(KBUILD_STEP)
    for i in range(0, len(KBUILD_LOG), 7):  # the log as make writes it: in odd pieces
        counter.feed(KBUILD_LOG[i:i + 7])
    assert counter.flush() == 8
    tail = StepCounter(KBUILD_STEP)
    tail.feed(b"  CC      a.o\n  LD      b.o")  # the last line has no newline yet
    assert tail.count == 1 and tail.flush() == 2


def test_mmdebstrap_download_unpack_and_setup_lines_count():
    log = (b"I: running apt-get update...\nI: downloading packages with apt...\n"
           b"Get:1 file:/srv/debian trixie/main amd64 clang-19 [12 kB]\nUnpacking clang (1:19)\n"
           b"Preparing to unpack .../clang.deb ...\n"
           b"Setting up clang (1:19) ...\nProcessing triggers for libc-bin\n")
    assert StepCounter(BOOTSTRAP_STEP).feed(log) == 3


def test_eta_is_the_average_rate_over_what_is_left():
    p = StepProgress("kernel build", 250, 1000, 60.0)
    assert p.fraction == 0.25 and p.eta == 180.0
    assert p.describe() == "kernel build: 250/1000 steps (25%), 1:00 elapsed, about 3:00 left"
    assert StepProgress("kernel build", 3, 1000, 1.0).eta is None  # too few to judge a rate


def test_a_step_that_outgrows_its_estimate_has_no_total_and_no_eta():
    p = StepProgress("kernel build", 1200, 1000, 60.0)
    assert p.total is None and p.fraction is None and p.eta is None
    assert p.describe() == "kernel build: 1200 steps, 1:00 elapsed"
    assert StepProgress("build root", 10, None, 5).describe() == "build root: 10 steps, 0:05 elapsed"


def test_finished_reports_the_count_and_time():
    assert StepProgress("kernel build", 930, 1000, 301, finished=True).describe() == \
        "kernel build: 930 steps in 5:01"
    assert clock(3725) == "1:02:05" and clock(0.4) == "0:00"


def test_expected_count_comes_from_the_build_directorys_last_build():
    assert expected_steps({}, configuring=True) == COLD_STEPS
    assert expected_steps({}, configuring=False) is None  # never built here with counting
    stamp = {"steps": 12, "cold_steps": 2231}
    assert expected_steps(stamp, configuring=False) == 12
    assert expected_steps(stamp, configuring=True) == 2231


def test_periodic_lines_print_every_interval_and_at_the_end():
    now = [100.0]
    lines: list[str] = []
    report = periodic_lines(lines.append, every=15.0, now=lambda: now[0])
    for t, done in ((0, 0), (5, 50), (14.9, 140), (15, 150), (20, 200), (31, 310)):
        now[0] = 100.0 + t
        report(StepProgress("kernel build", done, 1000, t))
    report(StepProgress("kernel build", 400, 1000, 40, finished=True))
    assert [line.split(",")[0] for line in lines] == [
        "kernel build: 150/1000 steps (15%)", "kernel build: 310/1000 steps (31%)",
        "kernel build: 400 steps in 0:40"]


def test_monitor_follows_a_growing_log(tmp_path):
    log = tmp_path / "build.log"
    seen: list[StepProgress] = []
    with open(log, "wb") as out, LogMonitor(log, KBUILD_STEP, "kernel build", 16, seen.append,
                                            interval=0.02) as monitor:
        for _ in range(2):
            out.write(KBUILD_LOG)
            out.flush()
            time.sleep(0.1)
    assert monitor.count == 16
    assert seen[-1].finished and seen[-1].done == 16 and seen[-1].fraction == 1.0
    assert any(0 < p.done < 16 for p in seen), "no report while the log was growing"
    assert [p.done for p in seen] == sorted(p.done for p in seen)
