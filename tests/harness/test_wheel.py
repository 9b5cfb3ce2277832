"""The harness as another project sees it: a wheel built from this repository, installed into a
fresh virtualenv outside it, gives a working `iopt-hil` command and a pytest plugin whose fixtures
drive a real guest -- on the same cache, so no kernel is built again."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.build.kbuild import module_digest

from ..unit.wheelbuild import REPO, build_wheel

pytestmark = pytest.mark.guest

EXTERNAL_TEST = '''
import json, os

import harness
from harness.build.kbuild import module_digest


def test_map_one_page_and_walk_it(pgtable, kernel_log, kernel_build):
    table = pgtable(ias=48, oas=48, pgsizes=0x40201000)
    result = table.map(0x10_0000, 0x40_0000_0000, 0x1000)
    assert (result.ret, result.mapped) == (0, 0x1000), result
    walk = table.walk()
    assert walk.problems == [] and len(walk.leaves) == 1
    assert walk.translate(0x10_0000 + 42) == 0x40_0000_0000 + 42
    assert table.unmap(0x10_0000, 0x1000) == 0x1000
    assert kernel_log.unexpected() == []
    with open(os.environ["REPORT"], "w") as out:
        json.dump({"harness": harness.__file__, "key": kernel_build.build.key,
                   "rebuilt": kernel_build.build.rebuilt, "module": module_digest()}, out)
'''


def _env(venv: Path) -> dict[str, str]:
    """The user's environment, minus anything that would import this checkout instead."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = f"{venv / 'bin'}:{env.get('PATH', '')}"
    return env


@pytest.fixture(scope="module")
def venv(tmp_path_factory) -> Path:
    """A virtualenv without system site packages, with the wheel and its dependencies from
    pip's configured index."""
    base = tmp_path_factory.mktemp("installed")
    wheel = build_wheel(base / "wheel")
    env = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(env)], check=True)
    subprocess.run([str(env / "bin/pip"), "install", "-q", "--disable-pip-version-check",
                    str(wheel)], check=True, env=_env(env), timeout=600)
    return env


def test_installed_command_answers(venv):
    out = subprocess.run([str(venv / "bin/iopt-hil"), "--help"], capture_output=True, text=True,
                         env=_env(venv), cwd=venv, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "usage: iopt-hil" in out.stdout and "run" in out.stdout


def test_external_project_uses_the_fixtures_on_the_same_build(venv, tmp_path, kernel_build):
    project = tmp_path / "project"
    project.mkdir()
    (project / "test_external.py").write_text(EXTERNAL_TEST)
    report = tmp_path / "report.json"
    env = dict(_env(venv), REPORT=str(report))
    proc = subprocess.run([str(venv / "bin/pytest"), "-q", "-p", "no:cacheprovider",
                           "test_external.py"], cwd=project, env=env, capture_output=True,
                          text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "1 passed" in proc.stdout
    seen = json.loads(report.read_text())
    assert seen["harness"].startswith(str(venv)), "the external run imported the checkout"
    assert seen["module"] == module_digest(), "installed module sources differ from the checkout's"
    assert seen["key"] == kernel_build.build.key, "the installed harness keyed its build elsewhere"
    assert seen["rebuilt"] is False and "nothing changed, make skipped" in proc.stdout


def test_checkout_conftest_and_entry_point_register_the_plugin_once(venv):
    """The installed entry point and the checkout's conftest.py both name harness.plugin."""
    proc = subprocess.run([str(venv / "bin/pytest"), "--collect-only", "-q", "-p",
                           "no:cacheprovider", "tests/unit/test_lpae.py"], cwd=REPO,
                          env=_env(venv), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "already registered" not in proc.stdout + proc.stderr
