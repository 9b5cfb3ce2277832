"""The tests that failed last time run first (a stable move to the front of the order the
suite's own conftest chose), and this run's outcomes are kept for the next."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from ..results import history
from .fixtures import results_base
from .kunit_items import KunitBase


class LastFailedFirst:
    def __init__(self, results: Path) -> None:
        self.results = results
        self.passed: dict[str, bool] = {}

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        # Every pytest-xdist worker reads the same file, so all collect the same order. KUnit
        # cases stay where they are: they wait on their own guest's run.
        failed = history.failed_last(self.results)
        if failed:
            items.sort(key=lambda item: isinstance(item, KunitBase) or item.nodeid not in failed)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.failed:
            self.passed[report.nodeid] = False
        elif report.passed and report.when == "call":
            self.passed.setdefault(report.nodeid, True)

    def pytest_sessionfinish(self) -> None:
        if not os.environ.get("PYTEST_XDIST_WORKER"):  # the controller has every report
            history.record(self.results, self.passed)


def register(config: pytest.Config) -> None:
    """For runs of the suite, which name their results directory (`iopt-hil run`, `verify`,
    `mutate`, `bisect-run` all do); a bare pytest of the harness's own tests leaves none."""
    if config.getoption("--results"):
        config.pluginmanager.register(LastFailedFirst(results_base(config)), "iopt-hil-lastfailed")
