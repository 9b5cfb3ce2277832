"""Nothing the harness starts outlives it: a SIGKILLed harness takes its builds (every process
in them, not only the first) and its child suites along, so the next run never races one."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def survivors(marker: str) -> list[str]:
    out = subprocess.run(["pgrep", "-f", "-a", marker], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if "pgrep" not in line]


def kill_harness_while(code: str, marker: str) -> list[str]:
    """Run `code` in a Python child (the harness), SIGKILL it once `marker` runs, and return
    the processes carrying `marker` that are still there a moment later."""
    child = subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], cwd=REPO,
                             env=dict(os.environ, PYTHONPATH=str(REPO)))
    try:
        deadline = time.monotonic() + 20
        while len(survivors(marker)) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(survivors(marker)) >= 2, "the child never started its processes"
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    deadline = time.monotonic() + 5
    while survivors(marker) and time.monotonic() < deadline:
        time.sleep(0.1)
    left = survivors(marker)
    subprocess.run(["pkill", "-KILL", "-f", marker], check=False)
    return left


def test_a_killed_harness_leaves_no_process_of_a_build_behind():
    """A build is make plus sub-makes plus compilers: here a shell and two background sleeps,
    started the way every build-root command is started."""
    marker = "31337.25"
    code = f"""
        from harness.build.namespace import unshare_argv
        from harness.build.toolchain import run_logged
        run_logged(unshare_argv() + ["sh", "-c", "sleep {marker} & sleep {marker} & wait"])
    """
    assert kill_harness_while(code, marker) == []


def test_a_killed_workflow_takes_its_child_suite_along(tmp_path):
    """verify, bisect-run and mutate run each suite as a child `iopt-hil run`."""
    marker = "31338.25"
    code = f"""
        from pathlib import Path
        import harness.workflows.suite_run as suite_run
        from harness.workflows.options import SuiteOptions
        suite_run.run_argv = lambda tree, options, results: [
            "sh", "-c", "sleep {marker} & sleep {marker} & wait"]
        suite_run.run_child_suite(Path("/nonexistent"), SuiteOptions(), Path({str(tmp_path)!r}))
    """
    left = kill_harness_while(code, marker)
    # the child itself dies with the harness; its own children are the child's business
    # (a real child suite's builds and guests are in namespaces of their own, as above)
    assert not any(line.split(None, 1)[1].startswith("sh -c") for line in left), left
