"""KUnit as pytest items: a `*.kunit` file lists module globs; every case KUnit reports for
them (and every built-in suite that ran at boot) becomes one item."""
from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from ..build.cachedir import locked
from ..errors import HarnessError
from ..guest import kunit
from ..build.kbuild import KernelBuild
from ..guest.machine import Machine
from ..pgtable.lpae import DEFAULT_GRANULE
from ..timeline import TIMELINE
from .fixtures import prepared_for, results_dir

Outcome = tuple[str, str, str]  # (item name, status, detail)


class KunitFailure(Exception):
    """A KUnit case reported `not ok` (or never reported)."""


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    if file_path.suffix == ".kunit":
        return KunitFile.from_parent(parent, path=file_path)
    return None


class KunitFile(pytest.File):
    """The cases are only known once KUnit has listed them. The first run for a build directory
    runs KUnit during collection; it keeps the case names, so later runs collect from them and
    run KUnit in a guest of its own in the background while the rest of the suite runs (or not at
    all, when -k deselects every case). A check item catches cases that appeared since."""

    def collect(self) -> Iterator[pytest.Item]:
        granules = self.config.getoption("--granule")
        if self.config.getoption("--no-kunit") or (granules and DEFAULT_GRANULE not in granules):
            return  # KUnit items are unmarked, i.e. part of the default granule's cell
        listing = case_list_path(self.config, self.path)
        known = _read_names(listing)
        if known is None:
            outcomes = shared_outcomes(self.config, self.path)
            _write_names(listing, [name for name, _, _ in outcomes])
            for name, status, detail in outcomes:
                yield KunitItem.from_parent(self, name=name, status=status, detail=detail)
            return
        lazy = LazyKunit.of(self.config, self.path)
        for name in known:
            yield KunitItem.from_parent(self, name=name, status="", detail="", lazy=lazy)
        yield KunitListCheck.from_parent(self, name=NEW_CASES, lazy=lazy, known=tuple(known),
                                         listing=listing)


NEW_CASES = "(cases reported beyond the last run's list)"
LAZY_KEY = pytest.StashKey[dict[Path, "LazyKunit"]]()


def case_list_path(config: pytest.Config, listing: Path) -> Path:
    prepared = prepared_for(config)
    return case_list_file(prepared.root.cache, prepared.build, listing)


def case_list_file(cache: Path, build: KernelBuild, listing: Path) -> Path:
    """Where the case names of this listing are kept: per build directory (tree, config,
    toolchain) and test module (its own KUnit suites run when it loads; two checkouts of the
    harness share a kernel but not a module), so an edit of the tree keeps them."""
    modules = ",".join([build.module.parent.name] + sorted(m.name for m in build.kunit_modules))
    key = hashlib.sha256(f"{build.key}\0{modules}\0{listing.read_text()}".encode()).hexdigest()[:16]
    return cache / "kunit-cases" / f"{listing.stem}-{key}.json"


def _read_names(path: Path) -> list[str] | None:
    try:
        names = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return names if isinstance(names, list) and names and "setup" not in names else None


def _write_names(path: Path, names: list[str]) -> None:
    if not names or "setup" in names:
        return  # a run that never got to list its cases teaches nothing
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_text(json.dumps(names))
    tmp.replace(path)


class LazyKunit:
    """One KUnit run for a listing, started in the background once collection is final."""

    def __init__(self, config: pytest.Config, listing: Path) -> None:
        self.config, self.listing = config, listing
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._outcomes: dict[str, tuple[str, str]] = {}

    @classmethod
    def of(cls, config: pytest.Config, listing: Path) -> "LazyKunit":
        return config.stash.setdefault(LAZY_KEY, {}).setdefault(listing, cls(config, listing))

    def start(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="kunit", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        try:
            outcomes = shared_outcomes(self.config, self.listing)
        except BaseException as exc:  # reported by the items, never lost in a thread
            outcomes = [("setup", "failed", f"{type(exc).__name__}: {exc}")]
        self._outcomes = {name: (status, detail) for name, status, detail in outcomes}

    def outcomes(self) -> dict[str, tuple[str, str]]:
        self.start()
        assert self._thread is not None
        self._thread.join()
        return self._outcomes

    def join(self) -> None:
        if self._thread is not None:
            self._thread.join()


def shared_outcomes(config: pytest.Config, listing: Path) -> list[Outcome]:
    """Under pytest-xdist every worker may ask: the first runs KUnit, the others read its
    outcomes, so only one guest boots for it."""
    run_id = os.environ.get("PYTEST_XDIST_TESTRUNUID")
    if not run_id:
        return run_kunit(config, listing)
    base = results_dir(config).parent
    shared = base / f"kunit-{listing.stem}-{run_id[:12]}.json"
    with locked(base / "kunit.lock"):
        if not shared.exists():
            shared.write_text(json.dumps(run_kunit(config, listing)))
        return [tuple(o) for o in json.loads(shared.read_text())]


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Cases still to be run by KUnit go last: their guest boots and runs meanwhile."""
    items.sort(key=lambda item: isinstance(item, KunitBase) and item.lazy is not None)


def pytest_collection_finish(session: pytest.Session) -> None:
    for lazy in {item.lazy for item in session.items
                 if isinstance(item, KunitBase) and item.lazy is not None}:
        lazy.start()


def pytest_sessionfinish(session: pytest.Session) -> None:
    """No KUnit guest outlives the session (e.g. one still running when -x stopped it)."""
    for lazy in session.config.stash.get(LAZY_KEY, {}).values():
        lazy.join()


def run_kunit(config: pytest.Config, listing: Path) -> list[Outcome]:
    patterns = [line.strip() for line in listing.read_text().splitlines()
                if line.strip() and not line.lstrip().startswith("#")]
    try:
        prepared = prepared_for(config)
        modules = kunit.select(prepared.build.kunit_modules, patterns)
        if not modules:
            raise HarnessError(f"no KUnit module in this build matches {patterns} (built: "
                               f"{[m.stem for m in prepared.build.kunit_modules]})")
        wall, started, cpu = time.time(), time.monotonic(), 0.0
        try:
            with Machine(prepared.build, prepared.root, log_dir=results_dir(config) / "kunit",
                         smp=1, progress=lambda m: None) as machine:  # see GuestPool
                runs = [kunit.boot_suites(machine)]  # built-in suites ran while booting
                runs += [kunit.run_module(machine, module) for module in modules]
                cpu = machine.cpu_seconds()
        finally:
            TIMELINE.add("kunit (boot and suites)", wall, time.monotonic() - started, cpu=cpu)
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


class KunitBase(pytest.Item):
    """What every KUnit item shares: a guest item, reported as `kunit NAME`, whose KUnit
    failure is shown under `heading()` rather than as a Python traceback. `lazy` is the
    background run its outcome comes from (None: known at collection)."""

    def __init__(self, *, lazy: LazyKunit | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.lazy = lazy
        self.add_marker(pytest.mark.guest)

    def heading(self) -> str:
        raise NotImplementedError

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException],
                     style: Any = None) -> str:
        if isinstance(excinfo.value, KunitFailure):
            return f"{self.heading()}\n{excinfo.value}"
        return str(super().repr_failure(excinfo))

    def reportinfo(self) -> tuple[Path, int | None, str]:
        return self.path, None, f"kunit {self.name}"


class KunitItem(KunitBase):
    """One KUnit case: its outcome known at collection, or from the background run (`lazy`)."""

    def __init__(self, *, status: str, detail: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.status, self.detail = status, detail

    def heading(self) -> str:
        return f"KUnit: {self.name}"

    def runtest(self) -> None:
        if self.lazy is not None:
            outcomes = self.lazy.outcomes()
            if self.name not in outcomes:
                setup = outcomes.get("setup")
                raise KunitFailure(setup[1] if setup else "KUnit did not report this case this "
                                   f"time ({len(outcomes)} cases reported)")
            self.status, self.detail = outcomes[self.name]
        if self.status == "skipped":
            pytest.skip(self.detail or "skipped by KUnit")
        if self.status != "passed":
            raise KunitFailure(self.detail or "KUnit reported not ok")


class KunitListCheck(KunitBase):
    """Cases this run reported that the collected list (the last run's) did not have: each one
    that failed fails this item; the list is renewed for the next run."""

    def __init__(self, *, known: tuple[str, ...], listing: Path, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.known, self.listing = known, listing

    def heading(self) -> str:
        return "KUnit cases that were not collected failed:"

    def runtest(self) -> None:
        assert self.lazy is not None  # made only for a background run
        outcomes = self.lazy.outcomes()
        _write_names(self.listing, list(outcomes))
        new = {name: o for name, o in outcomes.items() if name not in self.known}
        failed = {name: o for name, o in new.items() if o[0] not in ("passed", "skipped")}
        if failed:
            raise KunitFailure("\n\n".join(f"{name}: {status}\n{detail}"
                                            for name, (status, detail) in failed.items()))
