"""The two halves of `-x` across guests, with stand-ins for pytest's objects."""
from __future__ import annotations

from types import SimpleNamespace

from harness.plugin.failfast import STOP_INPUT, StopController, StopWorker


def _report(failed: bool, xfail: bool = False):
    report = SimpleNamespace(failed=failed)
    if xfail:
        report.wasxfail = "expected"
    return report


def test_the_controller_makes_the_stop_file_at_maxfail_and_removes_it():
    ctl = StopController(maxfail=2)
    node = SimpleNamespace(workerinput={})
    ctl.pytest_configure_node(node)
    assert node.workerinput[STOP_INPUT] == str(ctl.stop_file)
    assert ctl.stop_file.parent.stat().st_mode & 0o077 == 0, "a private directory"
    for report in (_report(False), _report(True), _report(True, xfail=True)):
        ctl.pytest_runtest_logreport(report)
    assert not ctl.stop_file.exists(), "one failure of two: not yet"
    ctl.pytest_runtest_logreport(_report(True))
    assert ctl.stop_file.exists()
    ctl.pytest_unconfigure()
    assert not ctl.stop_file.parent.exists()


def test_a_worker_stops_after_its_test_once_the_file_exists(tmp_path):
    worker = StopWorker(tmp_path / "stop")
    item = SimpleNamespace(session=SimpleNamespace(shouldstop=False))

    def run_one():
        protocol = worker.pytest_runtest_protocol(item)
        next(protocol)
        try:
            protocol.send(True)
        except StopIteration as done:
            return done.value

    assert run_one() is True and item.session.shouldstop is False
    (tmp_path / "stop").touch()
    assert run_one() is True and "another guest's test failed" in item.session.shouldstop
