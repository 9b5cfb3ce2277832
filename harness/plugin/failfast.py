"""`-x` (`--maxfail N`) across pytest-xdist's workers: the whole run stops after the test that
reached N, not after every guest has worked through the tests already queued for it.

pytest-xdist stops a worker at its own N-th failure, but tells the others only to finish what
they were handed, and worksteal hands each worker a whole share of the suite at the start (a
broken edit was red on one guest in 1 s and the run still took 17 s more). The controller
counts the failures the workers report; at N it creates a file the workers were told of,
and a worker that sees it after a test stops as pytest itself would."""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any, Generator

import pytest

STOP_INPUT = "iopt_hil_stop_file"  # pytest-xdist workerinput: the file that stops the run


class StopController:
    """On the controller: counts failed reports, and makes the stop file at `--maxfail`."""

    def __init__(self, maxfail: int) -> None:
        self.maxfail, self.failed = maxfail, 0
        self._dir = Path(tempfile.mkdtemp(prefix="iopt-hil-stop-"))  # 0700, this run's own
        self.stop_file = self._dir / "stop"

    @pytest.hookimpl(optionalhook=True)
    def pytest_configure_node(self, node: Any) -> None:
        node.workerinput[STOP_INPUT] = str(self.stop_file)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.failed and not hasattr(report, "wasxfail"):
            self.failed += 1
            if self.failed >= self.maxfail:
                self.stop_file.touch()

    def pytest_unconfigure(self) -> None:
        shutil.rmtree(self._dir, ignore_errors=True)


class StopWorker:
    """On a worker: after each test, stop if the controller said so."""

    def __init__(self, stop_file: Path) -> None:
        self.stop_file = stop_file

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_protocol(self, item: pytest.Item) -> Generator[None, object, object]:
        result = yield
        if self.stop_file.exists() and not item.session.shouldstop:
            item.session.shouldstop = "another guest's test failed (-x / --maxfail)"
        return result


def register(config: pytest.Config) -> None:
    """The controller or worker half, for a run under pytest-xdist with `--maxfail`."""
    stop = getattr(config, "workerinput", {}).get(STOP_INPUT)
    if stop:
        config.pluginmanager.register(StopWorker(Path(stop)), "iopt-hil-failfast")
    elif config.getoption("maxfail", 0) and config.pluginmanager.hasplugin("xdist") \
            and getattr(config.option, "numprocesses", None):
        config.pluginmanager.register(StopController(config.getoption("maxfail")),
                                      "iopt-hil-failfast")
