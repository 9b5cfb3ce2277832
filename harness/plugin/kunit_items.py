"""KUnit as pytest items: a `*.kunit` file lists module globs; every case KUnit reports for
them (and every built-in suite that ran at boot) becomes one item."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterator

import pytest

from ..build.cachedir import locked
from ..errors import HarnessError
from ..guest import kunit
from ..guest.machine import Machine
from ..pgtable.lpae import DEFAULT_GRANULE
from .fixtures import prepared_for, results_dir

Outcome = tuple[str, str, str]  # (item name, status, detail)


class KunitFailure(Exception):
    """A KUnit case reported `not ok` (or never reported)."""


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    if file_path.suffix == ".kunit":
        return KunitFile.from_parent(parent, path=file_path)
    return None


class KunitFile(pytest.File):
    """Collection builds the kernel (if needed), boots a guest and runs the suites, because the
    cases are only known once KUnit has listed them."""

    def collect(self) -> Iterator[pytest.Item]:
        granules = self.config.getoption("--granule")
        if self.config.getoption("--no-kunit") or (granules and DEFAULT_GRANULE not in granules):
            return  # KUnit items are unmarked, i.e. part of the default granule's cell
        for name, status, detail in self._outcomes():
            yield KunitItem.from_parent(self, name=name, status=status, detail=detail)

    def _outcomes(self) -> list[Outcome]:
        """Under pytest-xdist every worker collects: the first runs KUnit, the others read its
        outcomes, so all collect the same items and only one guest boots for it."""
        run_id = os.environ.get("PYTEST_XDIST_TESTRUNUID")
        if not run_id:
            return run_kunit(self.config, self.path)
        base = results_dir(self.config).parent
        shared = base / f"kunit-{self.path.stem}-{run_id[:12]}.json"
        with locked(base / "kunit.lock"):
            if not shared.exists():
                shared.write_text(json.dumps(run_kunit(self.config, self.path)))
            return [tuple(o) for o in json.loads(shared.read_text())]


def run_kunit(config: pytest.Config, listing: Path) -> list[Outcome]:
    patterns = [line.strip() for line in listing.read_text().splitlines()
                if line.strip() and not line.lstrip().startswith("#")]
    try:
        prepared = prepared_for(config)
        modules = kunit.select(prepared.build.kunit_modules, patterns)
        if not modules:
            raise HarnessError(f"no KUnit module in this build matches {patterns} (built: "
                               f"{[m.stem for m in prepared.build.kunit_modules]})")
        with Machine(prepared.build, prepared.root, log_dir=results_dir(config) / "kunit",
                     progress=lambda m: None) as machine:
            runs = [kunit.boot_suites(machine)]  # built-in suites ran while booting
            runs += [kunit.run_module(machine, module) for module in modules]
    except HarnessError as exc:
        return [("setup", "failed", str(exc))]
    return [outcome for run in runs for outcome in _run_outcomes(run)]


def _run_outcomes(run: kunit.KunitRun) -> list[Outcome]:
    out = []
    for result in run.document.results + run.document.orphans:
        for path, leaf in result.leaves():
            out.append((f"{run.module}::{path}", leaf.status,
                        "\n".join(leaf.diagnostics) or leaf.reason))
    if run.module != "boot" and (not run.document.complete or run.load_status != 0):
        out.append((f"{run.module}::complete", "failed",
                    f"KTAP incomplete or insmod failed ({run.load_status}):\n{run.console[-4000:]}"))
    return out


class KunitItem(pytest.Item):
    def __init__(self, *, status: str, detail: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.status, self.detail = status, detail
        self.add_marker(pytest.mark.guest)

    def runtest(self) -> None:
        if self.status == "skipped":
            pytest.skip(self.detail or "skipped by KUnit")
        if self.status != "passed":
            raise KunitFailure(self.detail or "KUnit reported not ok")

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException],
                     style: Any = None) -> str:
        if isinstance(excinfo.value, KunitFailure):
            return f"KUnit: {self.name}\n{excinfo.value}"
        return str(super().repr_failure(excinfo))

    def reportinfo(self) -> tuple[Path, int | None, str]:
        return self.path, None, f"kunit {self.name}"
