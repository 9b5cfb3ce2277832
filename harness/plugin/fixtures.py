"""Fixtures: the session's build and guest, and per-test handles on it (console watch, QMP,
SSH, the module client, a table factory). The guest itself is managed by `guest.manager`."""
from __future__ import annotations

import base64
import os
import pickle
from contextlib import nullcontext
from pathlib import Path
from typing import Callable, Iterator

import pytest

from ..build.pipeline import BuildRequest, Prepared, prepare
from ..errors import BootFailedEarlier, HarnessError, ModuleError
from ..guest.kernel_health import TestWatch
from ..guest.machine import Machine
from ..guest.manager import GuestManager, GuestPool, MachineFactory, boot_machine
from ..guest.modclient import PROTOCOL, ModuleClient, TableInfo, create_request, table_info
from ..guest.qmp import QmpChannel
from ..guest.ssh import SshChannel
from ..pgtable.device import DmaBench
from ..pgtable.tables import GuestTable
from ..resources import results_default

WATCH_KEY = pytest.StashKey[TestWatch]()
BROKEN_KEY = pytest.StashKey[bool]()  # the test hung or crashed the guest
FAILED_KEY = pytest.StashKey[bool]()  # the test failed (its module client is not reused)
TABLES_KEY = pytest.StashKey[list[GuestTable]]()
GUEST_CPU_KEY = pytest.StashKey[float]()  # QEMU CPU seconds the test cost its guest
PREPARED_KEY = pytest.StashKey[Prepared]()


class PreparedBuild:
    """Registered by `iopt-hil run` (see runner.py): the build it already made, so the session
    does not prepare it a second time. `factory` makes the session's guests (the harness's own
    tests hand in one that makes fake machines)."""

    def __init__(self, prepared: Prepared, factory: MachineFactory = boot_machine) -> None:
        self.prepared = prepared
        self.factory = factory


def _handed(config: pytest.Config) -> PreparedBuild | None:
    handed = [p for p in config.pluginmanager.get_plugins() if isinstance(p, PreparedBuild)]
    return handed[0] if handed else None


def results_base(config: pytest.Config) -> Path:
    """--results: the run's own results directory, the same for every pytest-xdist worker."""
    return Path(config.getoption("--results") or results_default()).resolve()


def results_dir(config: pytest.Config) -> Path:
    """--results, or a per-worker subdirectory under pytest-xdist (each worker has its guest)."""
    base, worker = results_base(config), os.environ.get("PYTEST_XDIST_WORKER")
    return base / worker if worker else base


PREPARED_INPUT = "iopt_hil_prepared"  # pytest-xdist workerinput: the controller's build


def prepared_for(config: pytest.Config) -> Prepared:
    """One build per session, shared by the fixtures and the KUnit collector. Under
    pytest-xdist a worker takes the controller's (see `handed_to_worker`): every guest then
    tests the same build, and no worker spends half a second checking the tree again."""
    if PREPARED_KEY not in config.stash:
        handed = _handed(config)
        sent = getattr(config, "workerinput", {}).get(PREPARED_INPUT)
        config.stash[PREPARED_KEY] = (handed.prepared if handed else
                                      pickle.loads(base64.b64decode(sent)) if sent else
                                      _prepare(config))
    return config.stash[PREPARED_KEY]


def handed_to_worker(config: pytest.Config) -> str | None:
    """The build this session was handed, as a pytest-xdist worker receives it (the same
    harness code on both sides unpickles it), or None if the session builds its own."""
    handed = _handed(config)
    return base64.b64encode(pickle.dumps(handed.prepared)).decode() if handed else None


def _prepare(config: pytest.Config) -> Prepared:
    request = BuildRequest(tree=config.getoption("--tree"), toolchain=config.getoption("--toolchain"),
                           fragments=tuple(config.getoption("--kconfig")))
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    capture = config.pluginmanager.get_plugin("capturemanager")

    def progress(msg: str) -> None:
        """Shown live, even under output capture: a cold build takes minutes."""
        if reporter is None:
            return
        with capture.global_and_fixture_disabled() if capture is not None else nullcontext():
            reporter.write_line(f"[iopt-hil] {msg}")

    return prepare(request, progress)


@pytest.fixture(scope="session")
def kernel_build(pytestconfig: pytest.Config) -> Prepared:
    return prepared_for(pytestconfig)


@pytest.fixture(scope="session")
def guest_pool(kernel_build: Prepared, pytestconfig: pytest.Config,
               record_testsuite_property: Callable[[str, object], None]) -> Iterator[GuestPool]:
    for key, value in kernel_build.build.provenance().items():
        record_testsuite_property(key, value)
    handed = _handed(pytestconfig)
    pool = GuestPool(kernel_build, results_dir(pytestconfig),
                     handed.factory if handed else boot_machine)
    try:
        yield pool
    finally:
        pool.close()


@pytest.fixture
def guest_manager(guest_pool: GuestPool, request: pytest.FixtureRequest) -> GuestManager:
    """The manager of the guest this test runs on: one vCPU, or `@pytest.mark.vcpus(n)`."""
    mark = request.node.get_closest_marker("vcpus")
    return guest_pool.manager(int(mark.args[0]) if mark else 1)


@pytest.fixture
def guest(guest_manager: GuestManager, request: pytest.FixtureRequest) -> Iterator[Machine]:
    """The running guest; its console is watched for splats during the test."""
    try:
        machine = guest_manager.get()
    except BootFailedEarlier as exc:
        pytest.skip(str(exc))
    assert machine.console is not None
    request.node.stash[WATCH_KEY] = TestWatch(machine, machine.console.mark())
    cpu = machine.cpu_seconds()
    yield machine
    request.node.stash[GUEST_CPU_KEY] = max(0.0, machine.cpu_seconds() - cpu)
    if request.node.stash.get(BROKEN_KEY, False) or not guest_manager.healthy():
        guest_manager.close()  # dead or hung: the next test boots a fresh guest


@pytest.fixture
def kernel_log(guest: Machine, request: pytest.FixtureRequest) -> TestWatch:
    """`with kernel_log.expect("warning", match="io-pgtable-arm"): ...` declares a splat."""
    watch: TestWatch = request.node.stash[WATCH_KEY]
    return watch


@pytest.fixture
def qmp(guest: Machine) -> QmpChannel:
    assert guest.qmp is not None
    return guest.qmp


@pytest.fixture
def ssh(guest: Machine) -> SshChannel:
    return guest.require_ssh()


@pytest.fixture
def module(guest: Machine, guest_manager: GuestManager,
           request: pytest.FixtureRequest) -> Iterator[ModuleClient]:
    """The guest's module client: one guest shell shared by the tests that leave it clean."""
    deadline = request.node.get_closest_marker("deadline")
    try:
        client = guest_manager.client(float(deadline.args[0]) if deadline else 120.0,
                                      guest.raise_if_hung)
    except HarnessError as exc:
        pytest.fail(str(exc))
    yield client
    if request.node.stash.get(FAILED_KEY, False):
        guest_manager.discard_client()


class TableFactory:
    """`pgtable(ias=48, oas=48, pgsizes=0x40201000, quirks=0, coherent_walk=True)` makes one
    table; `pgtable.many(count, ...)` makes `count` alike in one batch (one guest round trip,
    not `count`). Every table made is destroyed after the test."""

    def __init__(self, module: ModuleClient, guest: Machine) -> None:
        assert guest.memory is not None and guest.qmp is not None
        self.module, self.memory, self.qmp = module, guest.memory, guest.qmp
        self.made: list[GuestTable] = []

    def __call__(self, ias: int = 48, oas: int = 48, pgsizes: int = 0x40201000, quirks: int = 0,
                 coherent_walk: bool = True) -> GuestTable:
        return self._keep(self.module.create(ias, oas, pgsizes, quirks, coherent_walk))

    def many(self, count: int, ias: int = 48, oas: int = 48, pgsizes: int = 0x40201000,
             quirks: int = 0, coherent_walk: bool = True) -> list[GuestTable]:
        line = create_request(ias, oas, pgsizes, quirks, coherent_walk)
        replies = self.module.batch([line] * count)
        tables = [self._keep(table_info(r)) for r in replies if r.ret == 0]
        refused = [r.line for r in replies if r.ret != 0]
        if refused:
            raise ModuleError(f"{len(refused)} of {count} creates refused: {refused[0]}")
        return tables

    def _keep(self, info: TableInfo) -> GuestTable:
        table = GuestTable(self.module, info, self.memory, self.qmp)
        self.made.append(table)
        return table


@pytest.fixture
def pgtable(module: ModuleClient, guest: Machine,
            request: pytest.FixtureRequest) -> Iterator[TableFactory]:
    """The test's tables (see TableFactory); walked again if the test fails."""
    factory = TableFactory(module, guest)
    request.node.stash[TABLES_KEY] = factory.made
    yield factory
    if guest.alive and not request.node.stash.get(BROKEN_KEY, False):
        try:
            for table in factory.made:
                table.destroy()
        except HarnessError:
            pass  # a hung or crashed guest is discarded by the `guest` fixture


@pytest.fixture
def dma_bench(module: ModuleClient, guest: Machine,
              pgtable: TableFactory) -> Iterator[DmaBench | None]:
    """The edu device and the DMA window (None where the module has no device DMA for this
    tree's driver API). The device is detached before the test's tables are destroyed."""
    assert guest.memory is not None and guest.qmp is not None
    if module.request("smmu").ret == -95:  # EOPNOTSUPP: built without iopt_dma
        yield None
        return
    yield DmaBench(module, guest.memory, guest.qmp)
    if guest.alive:
        try:
            module.detach()
        except HarnessError:
            pass  # a hung or crashed guest is discarded by the `guest` fixture

