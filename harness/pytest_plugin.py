"""pytest plugin: options, session build, a guest that is rebooted after a crash, and fixtures.

The only pytest-aware module. Registered from the top-level conftest.py.
"""
from __future__ import annotations

import json
import os
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Callable, Generator, Iterator

import pytest

from .errors import ChannelError, HarnessError, MachineError
from .lpae import GRANULE_NAMES
from .buildroot import locked
from .machine import Machine
from .modclient import PROTOCOL, ModuleClient
from .pipeline import BuildRequest, Prepared, prepare
from .qmp import QmpChannel
from .ssh import SshChannel
from . import kunit
from .kernel_health import TestWatch
from .tables import GuestTable


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("iopt-hil")
    group.addoption("--tree", type=Path, default=None,
                    help="kernel tree to test (default: Debian linux-source-7.3)")
    group.addoption("--toolchain", choices=("buildroot", "host"), default="buildroot")
    group.addoption("--kconfig", action="append", default=[],
                    help="extra config fragment from guest-kernel-config/ (repeatable)")
    group.addoption("--results", type=Path, default=Path("results"),
                    help="directory for console logs")
    group.addoption("--granule", action="append", default=[], choices=GRANULE_NAMES,
                    help="run only tests of this translation granule (repeatable); tests "
                    "without a granule mark use 4K tables and count as 4K")
    group.addoption("--no-kunit", action="store_true",
                    help="do not collect KUnit suites (*.kunit files boot a guest at collection)")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "guest: needs a booted guest (builds a kernel first)")
    config.addinivalue_line("markers", "deadline(seconds): per-request deadline for the module "
                            "client; a missed one is checked for a guest hang")
    config.addinivalue_line("markers", "granule(name): the test's tables use this granule "
                            "(4K, 16K, 64K); selected with --granule")
    config.addinivalue_line("markers", "expect_splat(kind, match=None, count=1): the test must "
                            "cause exactly `count` such kernel splats (e.g. 'warning')")


DEFAULT_GRANULE = "4K"  # what the `pgtable` factory makes unless told otherwise


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


class GuestManager:
    """Owns the session's guest; boots a new one when the last one died."""

    def __init__(self, prepared: Prepared, log_root: Path) -> None:
        self.prepared = prepared
        self.log_root = log_root
        self.machine: Machine | None = None
        self.boots = 0
        self.boot_error: HarnessError | None = None
        self.record: dict[str, Any] = {}

    def get(self) -> Machine:
        if self.machine is not None and not self.machine.alive:
            self.machine.stop()
            self.machine = None
        if self.machine is None:
            if self.boot_error is not None:
                pytest.skip(f"guest failed to boot earlier: {self.boot_error}")
            self.boots += 1
            try:
                self.machine = Machine(self.prepared.build, self.prepared.root,
                                       log_dir=self.log_root / f"boot-{self.boots}").start()
            except HarnessError as exc:
                self.boot_error = exc
                raise
            self._record_provenance(self.machine)
        return self.machine

    def _record_provenance(self, machine: Machine) -> None:
        """results/provenance.json: what was tested, with what, on which QEMU command line."""
        assert machine.info is not None
        self.record = dict(self.prepared.build.provenance(), guest_release=machine.info.release,
                           qemu_argv=machine.info.qemu_argv, boots=self.boots,
                           boot_seconds=round(machine.info.seconds_to_ready, 2),
                           ssh_port=machine.info.ssh_port, run_dir=str(machine.rundir),
                           shm=str(machine.spec.shm_path) if machine.spec else "",
                           guest_up_since=time.time())
        self._write_provenance()

    def _write_provenance(self) -> None:
        self.log_root.mkdir(parents=True, exist_ok=True)
        (self.log_root / "provenance.json").write_text(json.dumps(self.record, indent=1) + "\n")

    def healthy(self) -> bool:
        """Alive and the module still answers (a hung request holds its lock forever)."""
        machine = self.machine
        if machine is None or not machine.alive or machine.ssh is None:
            return False
        try:
            client = ModuleClient(machine.ssh, timeout=15)
            try:
                return client.version() == PROTOCOL
            finally:
                client.close()
        except HarnessError:
            return False

    def close(self) -> None:
        if self.machine is not None:
            self.machine.stop()
            self.machine = None
            self.record["guest_down_at"] = time.time()
            self._write_provenance()


def results_dir(config: pytest.Config) -> Path:
    """--results, or a per-worker subdirectory under pytest-xdist (each worker has its guest)."""
    base: Path = config.getoption("--results").resolve()
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    return base / worker if worker else base


PREPARED_KEY = pytest.StashKey[Prepared]()


def prepared_for(config: pytest.Config) -> Prepared:
    """One build per session, shared by the fixtures and the KUnit collector."""
    if PREPARED_KEY not in config.stash:
        config.stash[PREPARED_KEY] = _prepare(config)
    return config.stash[PREPARED_KEY]


@pytest.fixture(scope="session")
def kernel_build(pytestconfig: pytest.Config) -> Prepared:
    return prepared_for(pytestconfig)


def _prepare(pytestconfig: pytest.Config) -> Prepared:
    request = BuildRequest(tree=pytestconfig.getoption("--tree"),
                           toolchain=pytestconfig.getoption("--toolchain"),
                           fragments=tuple(pytestconfig.getoption("--kconfig")))
    reporter = pytestconfig.pluginmanager.get_plugin("terminalreporter")
    capture = pytestconfig.pluginmanager.get_plugin("capturemanager")

    def progress(msg: str) -> None:
        """Shown live, even under output capture: a cold build takes minutes."""
        if reporter is None:
            return
        with capture.global_and_fixture_disabled() if capture is not None else nullcontext():
            reporter.write_line(f"[iopt-hil] {msg}")

    return prepare(request, progress)


@pytest.fixture(scope="session")
def guest_manager(kernel_build: Prepared, pytestconfig: pytest.Config,
                  record_testsuite_property: Callable[[str, object], None]) -> Iterator[GuestManager]:
    for key, value in kernel_build.build.provenance().items():
        record_testsuite_property(key, value)
    manager = GuestManager(kernel_build, results_dir(pytestconfig))
    try:
        yield manager
    finally:
        manager.close()


@pytest.fixture
def guest(guest_manager: GuestManager, request: pytest.FixtureRequest) -> Iterator[Machine]:
    """The running guest; its console is watched for splats during the test."""
    machine = guest_manager.get()
    assert machine.console is not None
    watch = TestWatch(machine, machine.console.mark())
    request.node.stash[WATCH_KEY] = watch
    yield machine
    if request.node.stash.get(BROKEN_KEY, False) or not guest_manager.healthy():
        guest_manager.close()  # dead or hung: the next test boots a fresh guest


WATCH_KEY = pytest.StashKey[TestWatch]()
BROKEN_KEY = pytest.StashKey[bool]()  # the test hung or crashed the guest
TABLES_KEY = pytest.StashKey[list[GuestTable]]()


@pytest.fixture
def kernel_log(guest: Machine, request: pytest.FixtureRequest) -> TestWatch:
    """`with kernel_log.expect("warning", match="io-pgtable-arm"): ...` declares a splat."""
    watch: TestWatch = request.node.stash[WATCH_KEY]
    return watch


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


@pytest.fixture
def qmp(guest: Machine) -> QmpChannel:
    assert guest.qmp is not None
    return guest.qmp


@pytest.fixture
def ssh(guest: Machine) -> SshChannel:
    return guest.require_ssh()


@pytest.fixture
def module(ssh: SshChannel, guest: Machine,
           request: pytest.FixtureRequest) -> Iterator[ModuleClient]:
    deadline = request.node.get_closest_marker("deadline")
    client = ModuleClient(ssh, timeout=float(deadline.args[0]) if deadline else 120.0,
                          on_timeout=guest.raise_if_hung)
    if client.version() != PROTOCOL:
        pytest.fail(f"guest module speaks protocol {client.version()}, harness expects {PROTOCOL}")
    yield client
    client.close()


@pytest.fixture
def pgtable(module: ModuleClient, guest: Machine,
            request: pytest.FixtureRequest) -> Iterator[Callable[..., GuestTable]]:
    """Factory: `pgtable(ias=48, oas=48, pgsizes=0x40201000)`; every table is destroyed after."""
    made: list[GuestTable] = []
    request.node.stash[TABLES_KEY] = made  # walked again if the test fails

    def make(ias: int = 48, oas: int = 48, pgsizes: int = 0x40201000, quirks: int = 0) -> GuestTable:
        assert guest.memory is not None and guest.qmp is not None
        table = GuestTable(module, module.create(ias, oas, pgsizes, quirks), guest.memory, guest.qmp)
        made.append(table)
        return table

    yield make
    if guest.alive and not request.node.stash.get(BROKEN_KEY, False):
        try:
            for table in made:
                table.destroy()
        except HarnessError:
            pass  # a hung or crashed guest is discarded by the `guest` fixture


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[
        None, pytest.TestReport, pytest.TestReport]:
    """A failed guest test carries what the guest printed during it and a fresh host walk of
    every table it made, inside its failure text (so JUnit and the summary have them too);
    a crash is noted so the guest is replaced rather than reused."""
    report = yield
    watch = item.stash.get(WATCH_KEY, None)
    if report.when == "call" and report.failed and watch is not None:
        if call.excinfo is not None and call.excinfo.errisinstance((MachineError, ChannelError)):
            item.stash[BROKEN_KEY] = True
        tables = item.stash.get(TABLES_KEY, [])
        if tables and watch.machine.alive and not item.stash.get(BROKEN_KEY, False):
            _add_section(report, WALK_SECTION, walker_finding(tables))
        console = watch.machine.console
        if console is not None:
            if not watch.machine.alive:
                console.join(2.0)  # QEMU exited: let the reader drain the last lines
            text = "\n".join(line.text for line in console.since(watch.start))
            _add_section(report, CONSOLE_SECTION, text or "(nothing)")
    return report


CONSOLE_SECTION = "guest console during this test"
WALK_SECTION = "host walk of the test's tables at failure"


def _add_section(report: pytest.TestReport, name: str, text: str) -> None:
    add = getattr(report.longrepr, "addsection", None)  # pytest's ExceptionRepr
    if callable(add):
        add(name, text)
    else:
        report.sections.append((name, text))


def walker_finding(tables: list[GuestTable], max_leaves: int = 16) -> str:
    """What the host sees in each table right now: leaves, table pages and any problem."""
    out = []
    for table in tables:
        info = table.info
        head = f"table {info.id} ({table.granule.name} granule, ias {info.ias}, oas {info.oas}, ttbr {info.ttbr:#x})"
        try:
            w = table.walk()
        except HarnessError as exc:
            out.append(f"{head}: walk failed: {exc}")
            continue
        out.append(f"{head}: {len(w.leaves)} leaves, {w.mapped_bytes():#x} bytes mapped, "
                   f"{len(w.tables)} table pages, {len(w.problems)} problems")
        out += [f"  problem: {p}" for p in w.problems]
        out += [f"  {leaf.describe()}" for leaf in w.leaves[:max_leaves]]
        if len(w.leaves) > max_leaves:
            out.append(f"  ... {len(w.leaves) - max_leaves} more leaves")
    return "\n".join(out)


class KunitFailure(Exception):
    """A KUnit case reported `not ok` (or never reported)."""


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    if file_path.suffix == ".kunit":
        return KunitFile.from_parent(parent, path=file_path)
    return None


class KunitFile(pytest.File):
    """A list of KUnit module globs; each KUnit case they report becomes one pytest item.

    Collection builds the kernel (if needed), boots a guest and runs the suites, because the
    cases are only known once KUnit has listed them.
    """

    def collect(self) -> Iterator[pytest.Item]:
        granules = self.config.getoption("--granule")
        if self.config.getoption("--no-kunit") or (granules and DEFAULT_GRANULE not in granules):
            return  # KUnit items are unmarked, i.e. part of the default granule's cell
        for name, status, detail in self._outcomes():
            yield KunitItem.from_parent(self, name=name, status=status, detail=detail)

    def _outcomes(self) -> list[tuple[str, str, str]]:
        """Under pytest-xdist every worker collects: the first runs KUnit, the others read its
        outcomes, so all collect the same items and only one guest boots for it."""
        run_id = os.environ.get("PYTEST_XDIST_TESTRUNUID")
        if not run_id:
            return self._run_kunit()
        base: Path = self.config.getoption("--results").resolve()
        shared = base / f"kunit-{self.path.stem}-{run_id[:12]}.json"
        with locked(base / "kunit.lock"):
            if not shared.exists():
                shared.write_text(json.dumps(self._run_kunit()))
            return [tuple(o) for o in json.loads(shared.read_text())]

    def _run_kunit(self) -> list[tuple[str, str, str]]:
        patterns = [line.strip() for line in self.path.read_text().splitlines()
                    if line.strip() and not line.lstrip().startswith("#")]
        try:
            prepared = prepared_for(self.config)
            modules = kunit.select(prepared.build.kunit_modules, patterns)
            if not modules:
                raise HarnessError(f"no KUnit module in this build matches {patterns} (built: "
                                   f"{[m.stem for m in prepared.build.kunit_modules]})")
            log_dir = results_dir(self.config) / "kunit"
            with Machine(prepared.build, prepared.root, log_dir=log_dir,
                         progress=lambda m: None) as machine:
                runs = [kunit.boot_suites(machine)]  # built-in suites ran while booting
                runs += [kunit.run_module(machine, module) for module in modules]
        except HarnessError as exc:
            return [("setup", "failed", str(exc))]
        out = []
        for run in runs:
            for result in run.document.results + run.document.orphans:
                for path, leaf in result.leaves():
                    detail = "\n".join(leaf.diagnostics) or leaf.reason
                    out.append((f"{run.module}::{path}", leaf.status, detail))
            if run.module != "boot" and (not run.document.complete or run.load_status != 0):
                out.append((f"{run.module}::complete", "failed",
                            f"KTAP incomplete or insmod failed ({run.load_status}):\n"
                            f"{run.console[-4000:]}"))
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
