"""`cli.main(["run", ...])` and friends with `prepare` and the pytest runner replaced, so nothing
builds or boots: what reaches pytest, what is refused, and the exit codes."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

from harness import cli
from harness.errors import ToolchainError
from harness.resources import suite_dir
from harness.workflows.bisect import ABORT
from tests.fakes.machine import fake_prepared


class Calls:
    def __init__(self) -> None:
        self.prepare: list[object] = []
        self.pytest: list[tuple[list[str], list[str], object]] = []


@pytest.fixture
def calls(monkeypatch, tmp_path):
    seen = Calls()
    log = tmp_path / "build.log"
    log.write_text("make: done\n")
    prepared = fake_prepared(log)

    def prepare(request, progress=print, on_steps=None):
        seen.prepare.append(request)
        return prepared

    def run_pytest(paths, extra, handed=None):
        seen.pytest.append((paths, extra, handed))
        return 3  # whatever pytest says is the run's exit status

    monkeypatch.setattr(cli, "prepare", prepare)
    monkeypatch.setattr(cli, "_pytest", run_pytest)
    return seen


def test_unknown_options_go_to_pytest_after_ours(calls, tmp_path):
    results = tmp_path / "res"
    assert cli.main(["run", "-q", "-k", "2M", "--results", str(results), "--kconfig", "kasan"]) == 3
    [(paths, extra, handed)] = calls.pytest
    assert paths == [str(suite_dir())], "no test named: the whole guest suite"
    assert extra[-3:] == ["-q", "-k", "2M"]
    assert f"--results={results}" in extra and f"--junitxml={results / 'junit.xml'}" in extra
    assert extra[:4] == ["--toolchain", "buildroot", "--kconfig", "kasan"]
    assert handed is not None, "the build made up front is handed to the session"
    assert calls.prepare[0].fragments == ("kasan",)
    assert (results / "build.log").read_text() == "make: done\n"


def test_a_named_test_replaces_the_default_suite(calls, tmp_path):
    test = Path(__file__).resolve().parents[1] / "guest" / "test_map_basic.py"
    cli.main(["run", f"{test}::test_x", "--results", str(tmp_path / "res")])
    [(paths, extra, _)] = calls.pytest
    assert paths == [] and extra[-1] == f"{test}::test_x"


def test_stale_reports_are_removed_before_the_run(calls, tmp_path):
    results = tmp_path / "res"
    results.mkdir()
    for name in ("junit.xml", "summary.md", "kcidb.json", "provenance.json", "timings.json"):
        (results / name).write_text("from an earlier run")
    cli.main(["run", "--results", str(results)])
    # only this run's build log and its own timeline (which names the build it timed)
    assert sorted(p.name for p in results.iterdir()) == ["build.log", "timings.json"]
    assert "build (all)" in (results / "timings.json").read_text()


def test_an_earlier_runs_guest_timelines_are_not_merged_into_this_one(calls, tmp_path):
    """A narrowed run (one guest) after a parallel one: the parallel run's per-guest timelines
    (results/gwN/timings.json) must not show up in this run's timings.json."""
    results = tmp_path / "res"
    (results / "gw0").mkdir(parents=True)
    (results / "gw0" / "timings.json").write_text(
        '[{"name": "suite: test_matrix.py", "start": 1.0, "seconds": 26.0, "count": 63}]')
    cli.main(["run", "-k", "one_leaf", "--results", str(results)])
    assert "test_matrix.py" not in (results / "timings.json").read_text()
    assert not (results / "gw0" / "timings.json").exists()


def test_granule_choices(calls, tmp_path, capsys):
    cli.main(["run", "--granule", "16K", "--granule=64K", "--results", str(tmp_path / "res")])
    extra = calls.pytest[0][1]
    assert extra.count("--granule=16K") == 1 and extra.count("--granule=64K") == 1
    with pytest.raises(SystemExit) as info:
        cli.main(["run", "--granule", "8K"])
    assert info.value.code == 2 and "invalid choice: '8K'" in capsys.readouterr().err
    assert len(calls.prepare) == 1, "a usage error builds nothing"


def test_results_inside_the_tree_are_refused_before_building(calls, tmp_path, capsys):
    tree = tmp_path / "linux"
    tree.mkdir()
    assert cli.main(["run", "--tree", str(tree), "--results", str(tree / "out")]) == 2
    assert "is inside the kernel tree" in capsys.readouterr().err
    assert calls.prepare == [] and calls.pytest == []


def test_a_harness_error_is_exit_2_with_the_message(monkeypatch, capsys):
    def prepare(request, progress=print, on_steps=None):
        raise ToolchainError("no rustc in the build root")

    monkeypatch.setattr(cli, "prepare", prepare)
    assert cli.main(["run"]) == 2
    assert capsys.readouterr().err == "iopt-hil: error: no rustc in the build root\n"


@pytest.mark.parametrize("argv", [["bisect-run"], ["bisect-run", "t.py", "--build-failure", "x"],
                                  ["bisect-run", "t.py", "--toolchain", "gcc"]])
def test_a_bisect_run_usage_error_aborts_the_bisection(argv, capsys):
    assert cli.main(argv) == ABORT == 128
    assert "usage:" in capsys.readouterr().err


def test_an_unexpected_bisect_run_error_aborts_too(monkeypatch, tmp_path, capsys):
    def step(*args, **kw):
        raise RuntimeError("surprise")

    monkeypatch.setattr("harness.workflows.bisect.bisect_step", step)
    assert cli.main(["bisect-run", "t.py", "--tree", str(tmp_path),
                     "--results", str(tmp_path.parent / "bisect-res")]) == ABORT
    assert "RuntimeError: surprise" in capsys.readouterr().err


def test_other_usage_errors_exit_2_and_unknown_options_are_refused_outside_run(calls):
    for argv in (["run", "--toolchain", "gcc"], ["build", "-q"], ["clean", "--bogus"]):
        with pytest.raises(SystemExit) as info:
            cli.main(argv)
        assert info.value.code == 2, argv
    assert calls.prepare == []


def test_a_whole_suite_run_spreads_over_guests_a_narrowed_one_does_not(calls, tmp_path,
                                                                        monkeypatch):
    from harness.plugin import runner

    monkeypatch.setattr(runner, "default_guests", lambda args, named: 0 if named or args else 3)
    cli.main(["run", "--results", str(tmp_path / "a")])
    assert calls.pytest[-1][1][-4:] == ["-n", "3", "--dist", "worksteal"]
    cli.main(["run", "-k", "2M", "--results", str(tmp_path / "b")])
    assert "-n" not in calls.pytest[-1][1]


@pytest.mark.parametrize("argv, guests", [
    ([], 3), (["-x", "-v"], 3), (["-q", "--granule=16K"], 3),
    (["-n", "2"], 0), (["-n0"], 0), (["--numprocesses=4"], 0), (["-p", "no:xdist"], 0),
    (["-pno:xdist"], 0), (["-k", "2M"], 0), (["-k2M"], 0), (["-m", "slow"], 0), (["--pdb"], 0),
    (["-s"], 0), (["--capture=no"], 0), (["--lf"], 0),
])
def test_default_guests_yields_to_the_users_choice(argv, guests):
    from harness.plugin.runner import default_guests

    assert default_guests(argv, False, cores=2, memory_mib=16384) == guests


def test_default_guests_follows_cores_and_memory():
    from harness.plugin.runner import default_guests

    assert default_guests([], True, cores=2, memory_mib=16384) == 0, "named tests: one guest"
    assert default_guests([], False, cores=1, memory_mib=16384) == 0, "one core: one guest"
    assert default_guests([], False, cores=4, memory_mib=16384) == 5
    assert default_guests([], False, cores=64, memory_mib=65536) == 8, "capped"
    assert default_guests([], False, cores=4, memory_mib=4000) == 2, "1.5 GiB a guest"
    assert default_guests([], False, cores=4, memory_mib=2000) == 0


def test_edit_loop_runs_the_checkouts_benchmark_with_every_option_its_own(monkeypatch):
    """`iopt-hil edit-loop ...` is the one command a fresh clone needs: it runs
    benchmarks/edit_loop.py with the harness's interpreter and hands it every option."""
    seen: list[list[str]] = []

    class Done:
        returncode = 5

    monkeypatch.setattr(cli.subprocess, "run", lambda argv, **kw: seen.append(argv) or Done())
    assert cli.main(["edit-loop", "--edits", "2", "--scenarios", "narrow", "--cold"]) == 5
    assert cli.main(["edit-loop", "--help"]) == 5
    script = Path(cli.__file__).resolve().parents[1] / "benchmarks" / "edit_loop.py"
    assert seen == [[sys.executable, str(script), "--edits", "2", "--scenarios", "narrow", "--cold"],
                    [sys.executable, str(script), "--help"]]
    assert script.is_file()
