"""Hooks: options and markers, the granule cell of the CI matrix, per-test splat checks,
failure reports that carry the guest console and a fresh host walk, and `-x` across guests."""
from __future__ import annotations

import os
import time
from typing import Any, Generator

import pytest

from ..errors import ChannelError, MachineError
from ..pgtable.lpae import DEFAULT_GRANULE
from ..pgtable.tables import describe_walks
from ..workflows.options import PLUGIN_OPTIONS
from ..timeline import TIMELINE
from . import failfast, kunit_items, lastfailed
from .fixtures import (BROKEN_KEY, FAILED_KEY, GUEST_CPU_KEY, PREPARED_INPUT, TABLES_KEY,
                       WATCH_KEY, handed_to_worker, results_dir)

# file -> [first start, seconds, tests, guest CPU seconds, harness CPU seconds]
FILE_TIMES_KEY = pytest.StashKey[dict[str, list[float]]]()

CONSOLE_SECTION = "guest console during this test"
WALK_SECTION = "host walk of the test's tables at failure"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("iopt-hil")
    for option in PLUGIN_OPTIONS:
        option.register(group.addoption)


def pytest_configure(config: pytest.Config) -> None:
    if not config.pluginmanager.is_registered(kunit_items):
        config.pluginmanager.register(kunit_items, "iopt-hil-kunit")
    failfast.register(config)
    lastfailed.register(config)
    config.addinivalue_line("markers", "guest: needs a booted guest (builds a kernel first)")
    config.addinivalue_line("markers", "vcpus(n): runs on a guest of n vCPUs (default 1), for "
                            "tests of guest processes that must truly run at once")
    config.addinivalue_line("markers", "deadline(seconds): per-request deadline for the module "
                            "client; a missed one is checked for a guest hang")
    config.addinivalue_line("markers", "granule(name): the test's tables use this granule "
                            "(4K, 16K, 64K); selected with --granule")
    config.addinivalue_line("markers", "expect_splat(kind, match=None, count=1): the test must "
                            "cause exactly `count` such kernel splats (e.g. 'warning')")


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """pytest-xdist's controller, before it starts a worker: hand on the build it was given."""
    prepared = handed_to_worker(node.config)
    if prepared is not None:
        node.workerinput[PREPARED_INPUT] = prepared


def granule_of(item: pytest.Item) -> str:
    mark = item.get_closest_marker("granule")
    return str(mark.args[0]) if mark else DEFAULT_GRANULE


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """--granule: one cell of the CI matrix (granule x kernel config) per invocation."""
    wanted = config.getoption("--granule")
    if not wanted:
        return
    keep: list[pytest.Item] = []
    dropped: list[pytest.Item] = []
    for item in items:
        (keep if granule_of(item) in wanted else dropped).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = keep


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, None, None]:
    """After a guest test passes, any splat it did not declare fails it, quoted whole."""
    result = yield
    watch = item.stash.get(WATCH_KEY, None)
    if watch is None or not watch.machine.alive:
        return result
    for mark in item.iter_markers("expect_splat"):
        watch.check_expected(mark.args[0], mark.kwargs.get("match"), mark.kwargs.get("count", 1))
    bad = watch.unexpected()
    if bad:
        pytest.fail(f"{len(bad)} kernel splat(s) during the test:\n\n"
                    + "\n\n".join(s.text for s in bad), pytrace=False)
    return result


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[
        None, pytest.TestReport, pytest.TestReport]:
    """A failed guest test carries what the guest printed during it and a fresh host walk of
    every table it made, inside its failure text (so JUnit and the summary have them too);
    a crash is noted so the guest is replaced rather than reused."""
    report = yield
    if report.failed:
        item.stash[FAILED_KEY] = True
    watch = item.stash.get(WATCH_KEY, None)
    if report.when == "call" and report.failed and watch is not None:
        if call.excinfo is not None and call.excinfo.errisinstance((MachineError, ChannelError)):
            item.stash[BROKEN_KEY] = True
        tables = item.stash.get(TABLES_KEY, [])
        if tables and watch.machine.alive and not item.stash.get(BROKEN_KEY, False):
            _add_section(report, WALK_SECTION, describe_walks(tables))
        console = watch.machine.console
        if console is not None:
            if not watch.machine.alive:
                console.join(2.0)  # QEMU exited: let the reader drain the last lines
            text = "\n".join(line.text for line in console.since(watch.start))
            _add_section(report, CONSOLE_SECTION, text or "(nothing)")
    return report


def _add_section(report: pytest.TestReport, name: str, text: str) -> None:
    add = getattr(report.longrepr, "addsection", None)  # pytest's ExceptionRepr
    if callable(add):
        add(name, text)
    else:
        report.sections.append((name, text))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Generator[
        None, object, object]:
    """Each test file's time, for results/timings.json: the suite guest's boots that happen
    inside a test's setup are timed on their own, so they are taken out of the file's figure
    (KUnit's guest boots in the background and is not). Its CPU too: the guest's QEMU during
    the test, and this process's (SSH, walks, checks)."""
    wall, started, cpu = time.time(), time.monotonic(), time.process_time()
    try:
        return (yield)
    finally:
        booting = sum(p.seconds for p in TIMELINE.phases()
                      if p.name.startswith("boot (boot-") and p.start >= wall)
        entry = item.config.stash.setdefault(FILE_TIMES_KEY, {}).setdefault(
            item.path.name, [wall, 0.0, 0, 0.0, 0.0])
        entry[1] += max(0.0, time.monotonic() - started - booting)
        entry[2] += 1
        entry[3] += item.stash.get(GUEST_CPU_KEY, 0.0)
        entry[4] += time.process_time() - cpu


def pytest_sessionfinish(session: pytest.Session) -> None:
    for name, (start, seconds, tests, cpu, host) in session.config.stash.get(FILE_TIMES_KEY,
                                                                             {}).items():
        TIMELINE.add(f"suite: {name}", start, seconds, int(tests), cpu, host)
    if os.environ.get("PYTEST_XDIST_WORKER"):  # a worker's timeline dies with it: keep it
        out = results_dir(session.config)
        out.mkdir(parents=True, exist_ok=True)
        TIMELINE.write(out / "timings.json")
