"""The edit-loop benchmark's verdict lines: a target that is not met names what keeps it there."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "edit_loop.py"


def _bench():
    spec = importlib.util.spec_from_file_location("edit_loop", SCRIPT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("edit_loop", module)  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def _sample(bench, total: float, build: float, suite: float, cpu: float = 0.0):
    return bench.Sample(total, {"suite: test_matrix.py": suite * 0.6, "suite: test_races.py": suite * 0.5,
                                "build: kernel": build}, {"suite: test_matrix.py": 63}, 0,
                        {"build (all)": build, "pytest session (all)": suite}, cpu,
                        {"suite: test_matrix.py": 4.5}, {"suite: test_matrix.py": 1.25})


def test_an_unmet_target_names_the_suite_when_the_suite_alone_is_over_it():
    bench = _bench()
    samples = [_sample(bench, 52.0 + i, 10.0, 40.0 + i, cpu=90.0 + i) for i in range(5)]
    line = bench.blocker(samples, 15.0, 2)
    assert "39.0 s off the median" in line
    assert "build 10.0 s + suite 42.0 s" in line and "46 s of test files" in line
    assert "the suite alone is over the target" in line
    assert line.endswith("the run costs 92 CPU-seconds, at least 46.0 s of wall time on 2 cores"
                         " however it is spread")


def test_an_unmet_target_names_the_build_when_it_is_the_larger_part(capsys):
    bench = _bench()
    samples = [_sample(bench, 25.0, 12.0, 9.0)]
    assert "the build is the larger part;" in bench.blocker(samples, 20.0, 2)
    bench.report("rust", samples)
    out = capsys.readouterr().out
    assert "target <= 20 s: NOT met" in out and "what it would take: 5.0 s off" in out
    matrix = next(line for line in out.splitlines() if "suite: test_matrix.py" in line)
    assert matrix.split()[-6:] == ["4.50", "1.25", "(63", "tests,", "86", "ms/test)"], matrix
    bench.report("narrow", [_sample(bench, 5.0, 0.3, 1.5)])
    assert "what it would take" not in capsys.readouterr().out, "a met target needs no such line"


def test_a_broken_edit_that_stays_green_is_reported_as_missed(capsys, tmp_path):
    bench = _bench()
    red, green = _sample(bench, 12.0, 7.0, 4.0), _sample(bench, 40.0, 7.0, 30.0)
    red.status, red.failed = 1, "tests/guest/test_contract.py::test_read_only"
    bench.report("bug", [red, green])
    out = capsys.readouterr().out
    assert "## bug: 1 of 2 broken edits red; MISSED (exit status [0])" in out
    assert "first failures: test_contract.py::test_read_only, -" in out
    junit = tmp_path / "junit.xml"
    junit.write_text('<testsuites><testsuite><testcase classname="a.b" name="ok"/>'
                     '<testcase classname="tests.guest.test_x" name="t[4K]"><failure/></testcase>'
                     '</testsuite></testsuites>')
    assert bench.first_failure(junit) == "tests/guest/test_x.py::t[4K]"
    assert bench.first_failure(tmp_path / "none.xml") == ""


def test_every_bug_of_the_bug_scenario_is_a_common_path_c_bug():
    bench = _bench()
    assert len(bench.BUGS) >= 5
    assert all(b.path == bench.C_FILE and b.suite == bench.SUITE for b in bench.BUGS)


def test_a_slow_cold_run_names_its_largest_phase_and_how_busy_the_cores_were():
    bench = _bench()
    from harness.timeline import Phase
    timeline = [Phase("build: build root", 0.0, 43.0), Phase("build: kernel", 60.0, 266.0),
                Phase("build (all)", 0.0, 340.0), Phase("suite: test_matrix.py", 400.0, 30.0)]
    line = bench.cold_blocker(timeline, 386.0, 650.0, 2)
    assert "26 s off" in line and "the largest phase is build: kernel (266 s)" in line
    assert "650 CPU-seconds, 84% of 2 cores for 386 s" in line


def test_the_cold_report_lists_the_runs_phases_and_sums_the_guests_files():
    bench = _bench()
    from harness.timeline import Phase
    timeline = [Phase("build: build root", 0.0, 44.0), Phase("build: tree unpack", 44.0, 11.0),
                Phase("build: kernel", 60.0, 266.0), Phase("gw0: boot (boot-1): qemu to ssh", 330, 2.5),
                Phase("gw0: suite: test_matrix.py", 333.0, 14.0),
                Phase("gw1: suite: test_races.py", 333.0, 8.0), Phase("suite: test_dma.py", 340, 1.0)]
    lines = bench.cold_report(timeline, 350.0, 0, 600.0, 2)
    assert lines[0].endswith("target <= 360 s: met") and "what it would take" not in "".join(lines)
    names = [line.split("  ")[1] for line in lines[1:-1]]
    assert names == ["build: build root", "build: tree unpack", "build: kernel"]
    assert lines[-1].split() == ["test", "files", "(summed", "over", "the", "guests)", "23.0"]
    assert "NOT met" in bench.cold_report(timeline, 400.0, 0, 600.0, 2)[0]
