"""Crash and hang recovery and the boot-failure skip: `GuestManager` on its own, then the plugin
in real inner pytest sessions (`pytester`) whose guests come from a fake machine factory handed
in through `PreparedBuild`."""
from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from harness.build.pipeline import Prepared
from harness.errors import BootFailedEarlier, BootTimeout, HarnessError
from harness.guest.manager import GuestManager, GuestPool
from harness.plugin.fixtures import PreparedBuild
from harness.plugin.hooks import CONSOLE_SECTION
from tests.fakes.machine import CLEAN_BOOT, FakeFactory, fake_prepared

pytest_plugins = ["pytester"]


def test_manager_reuses_a_live_guest_and_records_provenance(tmp_path):
    factory = FakeFactory()
    manager = GuestManager(fake_prepared(), tmp_path, factory)
    first = manager.get()
    assert manager.get() is first and factory.calls == 1
    record = json.loads((tmp_path / "provenance.json").read_text())
    assert (record["guest_release"], record["boots"]) == ("7.3.4", 1)
    assert manager.healthy()
    manager.close()
    assert not first.alive and "guest_down_at" in json.loads((tmp_path / "provenance.json").read_text())


def test_manager_replaces_a_guest_that_died(tmp_path):
    factory = FakeFactory()
    manager = GuestManager(fake_prepared(), tmp_path, factory)
    first = manager.get()
    first.crash()
    assert not manager.healthy()
    second = manager.get()
    assert second is not first and second.alive and first.stops == 1
    assert manager.boots == 2 and (tmp_path / "boot-2" / "console.log").exists()
    assert json.loads((tmp_path / "provenance.json").read_text())["boots"] == 2
    manager.close()


def test_manager_never_boots_again_after_a_failed_boot(tmp_path):
    factory = FakeFactory(RuntimeError("qemu-system-aarch64: not found"), {})
    manager = GuestManager(fake_prepared(), tmp_path, factory)
    with pytest.raises(RuntimeError):
        manager.get()
    for _ in range(2):
        with pytest.raises(BootFailedEarlier, match="failed to boot earlier: qemu-system") as info:
            manager.get()
        assert isinstance(info.value.cause, RuntimeError)
    assert factory.calls == 1


def test_a_skip_reason_is_one_line_not_the_console_tail(tmp_path):
    factory = FakeFactory(BootTimeout("guest not ready within 180 s", "line 1\nline 2\nline 3"), {})
    manager = GuestManager(fake_prepared(), tmp_path, factory)
    with pytest.raises(BootTimeout):
        manager.get()
    with pytest.raises(BootFailedEarlier) as info:
        manager.get()
    assert "\n" not in str(info.value) and "guest not ready within 180 s" in str(info.value)


@pytest.fixture(autouse=True)
def _no_plugin_autoload(monkeypatch):
    """Inner sessions load only the harness plugin (autoloading the others costs ~1 s)."""
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")


def inner(pytester, factory, source, *args):
    pytester.makepyfile(test_inner=source)
    return pytester.runpytest_inprocess("-p", "harness.plugin", "-p", "no:cacheprovider", "-ra",
                                        f"--results={pytester.path / 'results'}", *args,
                                        plugins=[PreparedBuild(fake_prepared(), factory)])


CRASH = """
from harness.guest.modclient import PROTOCOL

seen = []

def test_crashes_the_guest(guest, module):
    seen.append(guest)
    module.request("trigger what=panic")

def test_gets_a_fresh_guest(guest, guest_manager, module):
    from harness.guest.modclient import PROTOCOL
    assert guest is not seen[0] and not seen[0].alive
    assert guest_manager.boots == 2 and module.version() == PROTOCOL
"""


def test_a_crash_fails_the_test_and_the_next_one_gets_a_fresh_guest(pytester):
    factory = FakeFactory()
    result = inner(pytester, factory, CRASH)
    result.assert_outcomes(passed=1, failed=1)
    report = result.stdout.str()
    assert "guest shell closed (did the guest crash?)" in report
    assert CONSOLE_SECTION in report and "Kernel panic - not syncing" in report
    assert factory.calls == 2 and factory.machines[0].stops >= 1
    assert not factory.machines[1].alive, "the session must stop its last guest"


HANG = """
import pytest

from harness.guest.modclient import PROTOCOL

@pytest.mark.deadline(0.15)
def test_hangs_the_guest(guest, module):
    module.request("trigger what=hang")

def test_gets_a_fresh_guest(guest, guest_manager, module):
    from harness.guest.modclient import PROTOCOL
    assert guest_manager.boots == 2 and module.version() == PROTOCOL
"""


def test_a_hang_is_detected_and_the_guest_is_replaced_without_asking_it(pytester):
    factory = FakeFactory()
    result = inner(pytester, factory, HANG)
    result.assert_outcomes(passed=1, failed=1)
    assert "GuestHang: guest hung: no console output" in result.stdout.str()
    hung = factory.machines[0]
    assert hung.stops >= 1 and factory.calls == 2
    # Marked broken: replaced without the health check, whose request would block 15 s.
    assert len(hung.fake_ssh.channels) == 1


BOOTS = """
def test_first(guest):
    pass

def test_second(guest):
    pass

def test_third(guest):
    pass

def test_without_a_guest():
    pass
"""


def test_after_a_failed_boot_later_tests_are_skipped_with_the_reason(pytester):
    factory = FakeFactory(dict(boot_log=CLEAN_BOOT[:40], boot_timeout=0.1), {})
    result = inner(pytester, factory, BOOTS)
    result.assert_outcomes(passed=1, errors=1, skipped=2)
    result.stdout.re_match_lines([r".*BootTimeout: guest not ready within",
                                  r"SKIPPED \[1\] test_inner.py:4: guest failed to boot earlier: "
                                  r"guest not ready within",
                                  r"SKIPPED \[1\] test_inner.py:7: guest failed to boot earlier: "
                                  r"guest not ready within"])
    assert factory.calls == 1, "no second boot after a failed one"


def test_boot_failure_in_the_inner_session_is_really_a_boot_timeout(tmp_path):
    """The inner session's first error comes from the real boot check, not from the fake."""
    factory = FakeFactory(dict(boot_log=CLEAN_BOOT[:40], boot_timeout=0.1))
    with pytest.raises(BootTimeout):
        factory(fake_prepared(), tmp_path)


VCPUS = """
import pytest

guests = {}

def test_one_vcpu_by_default(guest, guest_manager):
    guests["one"] = guest
    assert guest_manager.vcpus == 1

@pytest.mark.vcpus(2)
def test_two_vcpus_when_marked(guest, guest_manager, module):
    guests["two"] = guest
    assert guest_manager.vcpus == 2 and guest is not guests["one"] and guests["one"].alive

@pytest.mark.vcpus(2)
def test_the_two_vcpu_guest_is_shared(guest):
    assert guest is guests["two"]

def test_back_on_the_one_vcpu_guest(guest):
    assert guest is guests["one"]
"""


def test_a_vcpus_mark_gets_a_guest_of_its_own_size_and_the_others_share_one_of_one(pytester):
    """Most tests run on a guest of one vCPU; `vcpus(2)` tests share one guest of two, booted
    on first use, with its logs apart, and the session stops both."""
    factory = FakeFactory()
    result = inner(pytester, factory, VCPUS)
    result.assert_outcomes(passed=4)
    assert factory.vcpus == [1, 2], factory.vcpus
    assert not any(m.alive for m in factory.machines), "the session must stop every guest"
    records = {p.parent.name: json.loads(p.read_text())["vcpus"]
               for p in (pytester.path / "results").rglob("provenance.json")}  # gwN/ under xdist
    assert sorted(records.values()) == [1, 2] and records["2-vcpus"] == 2, records


def test_a_guest_of_no_vcpu_is_refused(tmp_path):
    with pytest.raises(HarnessError, match="at least one vCPU"):
        GuestPool(fake_prepared(), tmp_path, FakeFactory()).manager(0)


HANDED = """
def test_the_worker_tests_the_controllers_build(kernel_build):
    assert kernel_build.build.handed == "by the controller"
"""


def test_xdist_workers_test_the_build_the_controller_was_handed(pytester, monkeypatch):
    """A worker that built on its own would prepare a real kernel here (and fail: no build
    root in a unit test); it must take the controller's build instead."""
    not_a_cache = pytester.path / "not-a-cache"
    not_a_cache.write_text("a worker preparing a build of its own fails at once here\n")
    monkeypatch.setenv("IOPT_HIL_CACHE", str(not_a_cache))
    pytester.makepyfile(test_inner=HANDED)
    result = pytester.runpytest_inprocess(
        "-p", "harness.plugin", "-p", "xdist.plugin", "-n", "1", "-p", "no:cacheprovider",
        f"--results={pytester.path / 'results'}",
        plugins=[PreparedBuild(Prepared(None, SimpleNamespace(handed="by the controller")))])
    result.assert_outcomes(passed=1)
