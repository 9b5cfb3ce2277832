"""The GitLab example pipeline, executed for real by gitlab-ci-local's shell executor on this
machine: a reduced matrix (a tree of each io_pgtable API generation, one config, one granule,
`-k test_one_leaf` per job) sharing the suite's cache, so both builds are the ones the other
tests made. Every job must pass and leave its JUnit file as an artefact.

What cannot run locally is changed, and only that: `image:` is dropped (no container registry
is reachable here, so jobs run in the shell), and the verify job is not started (its rules ask
for a merge-request pipeline of a kernel tree's own project).
"""
from __future__ import annotations

import copy
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from harness.build.cachedir import cache_root, locked
from harness.build.git import IDENTITY, git
from harness.results.reports import read_junit

pytestmark = pytest.mark.guest
REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / ".ci" / "examples" / "gitlab-ci.yml"
# 4.51 and later need Node.js 22; Debian bookworm (and this host) has Node.js 20.
GITLAB_CI_LOCAL = "gitlab-ci-local@4.50.0"
TREES = {"debian:linux-source-7.3": "7.3.", "debian:linux-source-7.2": "7.2."}


def gitlab_ci_local(cache: Path) -> Path:
    """Installed once into the cache with npm (whose own configuration names the registry)."""
    missing = [tool for tool in ("node", "npm", "rsync") if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"gitlab-ci-local needs {', '.join(missing)} on the host")
    home = cache / "tools" / "gitlab-ci-local"
    exe = home / "node_modules" / ".bin" / "gitlab-ci-local"
    with locked(cache / "tools.lock"):
        if not exe.exists():
            home.mkdir(parents=True, exist_ok=True)
            subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--prefix", str(home),
                            GITLAB_CI_LOCAL], check=True, capture_output=True)
    return exe


def reduced_pipeline() -> dict:
    doc = copy.deepcopy(yaml.safe_load(EXAMPLE.read_text()))
    doc[".iopt-hil"].pop("image")
    (cell,) = doc["regression"]["parallel"]["matrix"]
    assert "project" in cell["TREE"] and set(cell["KCONFIG"]) >= {"default"}, cell
    cell.update(TREE=list(TREES), KCONFIG=["default"], GRANULE=["4K"])
    return doc


# A kernel build of its own when the cache is cold (~10-15 min on 2 cores beside other work).
@pytest.mark.timeout(3600)
def test_the_gitlab_pipeline_runs_every_job_green_with_junit_artefacts(kernel_build, tmp_path):
    tool = gitlab_ci_local(cache_root())
    project = tmp_path / "project"
    project.mkdir()
    (project / ".gitlab-ci.yml").write_text(yaml.safe_dump(reduced_pipeline(), sort_keys=False))
    git(project, "init", "--quiet", "--initial-branch=main")
    git(project, "add", ".gitlab-ci.yml")
    git(project, "commit", "--quiet", "-m", "pipeline", env=IDENTITY)
    variables = {"IOPT_HIL_DIR": str(REPO), "IOPT_HIL_CACHE": str(cache_root()),
                 "RESULTS": str(tmp_path / "results"), "PYTEST_ARGS": "-k test_one_leaf",
                 "GUESTS": "1", "CI_PIPELINE_SOURCE": "schedule"}
    argv = [str(tool), "--concurrency", "1", "--shell-isolation"]
    for key, value in variables.items():
        argv += ["--variable", f"{key}={value}"]
    proc = subprocess.run(argv, cwd=project, text=True, capture_output=True, timeout=3600)
    sys.stdout.write(proc.stdout[-8000:] + proc.stderr[-2000:])
    assert proc.returncode == 0, proc.stdout[-4000:]
    assert proc.stdout.count(" PASS ") == len(TREES) and " FAIL " not in proc.stdout
    artefacts = sorted((project / ".gitlab-ci-local" / "artifacts").glob("*/results/**/junit.xml"))
    releases = {}
    for junit in artefacts:
        cases, props = read_junit(junit)
        assert any("::test_one_leaf_walks_and_translates[" in c.name and c.outcome == "passed"
                   for c in cases), [(c.name, c.outcome) for c in cases]
        assert all(c.outcome == "passed" for c in cases)
        releases[props["kernel_release"][:4]] = junit
    assert len(artefacts) == len(TREES), artefacts
    assert set(releases) == set(TREES.values()), releases
