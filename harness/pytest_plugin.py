"""pytest plugin: options, session build, a guest that is rebooted after a crash, and fixtures.

The only pytest-aware module. Registered from the top-level conftest.py.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Generator, Iterator

import pytest

from .errors import HarnessError
from .machine import Machine
from .modclient import PROTOCOL, ModuleClient
from .pipeline import BuildRequest, Prepared, prepare
from .qmp import QmpChannel
from .ssh import SshChannel
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


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "guest: needs a booted guest (builds a kernel first)")


class GuestManager:
    """Owns the session's guest; boots a new one when the last one died."""

    def __init__(self, prepared: Prepared, log_root: Path) -> None:
        self.prepared = prepared
        self.log_root = log_root
        self.machine: Machine | None = None
        self.boots = 0
        self.boot_error: HarnessError | None = None

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
        return self.machine

    def close(self) -> None:
        if self.machine is not None:
            self.machine.stop()
            self.machine = None


@pytest.fixture(scope="session")
def kernel_build(pytestconfig: pytest.Config) -> Prepared:
    request = BuildRequest(tree=pytestconfig.getoption("--tree"),
                           toolchain=pytestconfig.getoption("--toolchain"),
                           fragments=tuple(pytestconfig.getoption("--kconfig")))
    reporter = pytestconfig.pluginmanager.get_plugin("terminalreporter")
    capture = pytestconfig.pluginmanager.get_plugin("capturemanager")

    def progress(msg: str) -> None:
        """Shown live, even under output capture: a cold build takes minutes."""
        if reporter is None:
            return
        if capture is not None:
            with capture.global_and_fixture_disabled():
                reporter.write_line(f"[iopt-hil] {msg}")
        else:
            reporter.write_line(f"[iopt-hil] {msg}")

    return prepare(request, progress)


@pytest.fixture(scope="session")
def guest_manager(kernel_build: Prepared, pytestconfig: pytest.Config,
                  record_testsuite_property: Callable[[str, object], None]) -> Iterator[GuestManager]:
    for key, value in kernel_build.build.provenance().items():
        record_testsuite_property(key, value)
    manager = GuestManager(kernel_build, pytestconfig.getoption("--results").resolve())
    try:
        yield manager
    finally:
        manager.close()


@pytest.fixture
def guest(guest_manager: GuestManager, request: pytest.FixtureRequest) -> Iterator[Machine]:
    machine = guest_manager.get()
    assert machine.console is not None
    mark = machine.console.mark()
    yield machine
    request.node.stash[CONSOLE_KEY] = "\n".join(line.text for line in machine.console.since(mark))


CONSOLE_KEY = pytest.StashKey[str]()


@pytest.fixture
def qmp(guest: Machine) -> QmpChannel:
    assert guest.qmp is not None
    return guest.qmp


@pytest.fixture
def ssh(guest: Machine) -> SshChannel:
    return guest.require_ssh()


@pytest.fixture
def module(ssh: SshChannel) -> Iterator[ModuleClient]:
    client = ModuleClient(ssh)
    if client.version() != PROTOCOL:
        pytest.fail(f"guest module speaks protocol {client.version()}, harness expects {PROTOCOL}")
    yield client
    client.close()


@pytest.fixture
def pgtable(module: ModuleClient, guest: Machine) -> Iterator[Callable[..., GuestTable]]:
    """Factory: `pgtable(ias=48, oas=48, pgsizes=0x40201000)`; every table is destroyed after."""
    made: list[GuestTable] = []

    def make(ias: int = 48, oas: int = 48, pgsizes: int = 0x40201000, quirks: int = 0) -> GuestTable:
        assert guest.memory is not None and guest.qmp is not None
        table = GuestTable(module, module.create(ias, oas, pgsizes, quirks), guest.memory, guest.qmp)
        made.append(table)
        return table

    yield make
    if guest.alive:
        for table in made:
            table.destroy()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: Any) -> Generator[None, Any, None]:
    outcome = yield
    report = outcome.get_result()
    if report.when == "teardown" and CONSOLE_KEY in item.stash:
        text = item.stash[CONSOLE_KEY]
        if text and (report.failed or getattr(item, "_iopt_failed", False)):
            report.sections.append(("guest console during this test", text))
    if report.when == "call" and report.failed:
        item._iopt_failed = True  # type: ignore[attr-defined]
