"""The shipped CI examples stay in step with the CLI: every matrix cell's command parses and
names a fragment and granule that exist."""
import itertools
import shlex
from pathlib import Path

import pytest
import yaml

from harness.cli import parser
from harness.pgtable.lpae import GRANULE_NAMES
from harness.build.kconfig import fragment_paths

EXAMPLES = Path(__file__).resolve().parents[2] / ".ci" / "examples"


def commands(script: str, env: dict) -> list[str]:
    for key, value in env.items():
        script = script.replace(f"${{{{ matrix.{key} }}}}", value).replace(f"${key}", value)
    argv = shlex.split(" ".join(script.split()))
    assert argv, script
    assert argv[0].endswith("/iopt-hil") or argv[0] == "sudo"
    if argv[0] == "sudo":
        argv = argv[2:]
    return argv[1:]


def check(argv: list[str]) -> None:
    args, unknown = parser().parse_known_args(argv)
    assert unknown in ([], ["-n", "2"]), unknown
    fragment_paths(args.kconfig)  # raises for an unknown fragment
    assert set(getattr(args, "granule", [])) <= set(GRANULE_NAMES)


GITLAB_ENV = {"CI_PROJECT_DIR": "/builds/linux", "RESULTS": "/tmp/r", "CI_JOB_ID": "7",
              "IOPT_HIL_DIR": "/opt/iopt-hil", "GUESTS": "2", "PYTEST_ARGS": ""}


def iopt_lines(script: list[str]) -> list[str]:
    return [line for line in script if "iopt-hil " in line]


def test_gitlab_matrix_cells_and_verify_job_parse():
    doc = yaml.safe_load((EXAMPLES / "gitlab-ci.yml").read_text())
    matrix = doc["regression"]["parallel"]["matrix"][0]
    cells = list(itertools.product(matrix["TREE"], matrix["KCONFIG"], matrix["GRANULE"]))
    assert len(cells) == 12 and "project" in matrix["TREE"]
    assert any(t.startswith("debian:linux-source-") for t in matrix["TREE"])
    for tree, kconfig, granule in cells:
        path = GITLAB_ENV["CI_PROJECT_DIR"] if tree == "project" else tree
        (line,) = iopt_lines(doc["regression"]["script"])
        argv = commands(line, dict(GITLAB_ENV, KCONFIG=kconfig, GRANULE=granule, tree=path))
        check(argv)
        assert argv[argv.index("--tree") + 1] == path
        assert not argv[argv.index("--results") + 1].startswith("/builds/linux")
    (line,) = iopt_lines(doc["verify"]["script"])
    argv = commands(line, dict(GITLAB_ENV, CI_MERGE_REQUEST_DIFF_BASE_SHA="abc123"))
    assert argv[0] == "verify" and "--each" in argv
    check(argv)


@pytest.mark.parametrize("job", ["regression", "verify"])
def test_github_jobs_parse(job):
    doc = yaml.safe_load((EXAMPLES / "github-actions.yml").read_text())
    steps = [line for s in doc["jobs"][job]["steps"] if "run" in s
             for line in s["run"].split("\n") if "iopt-hil/iopt-hil" in line]
    assert steps
    matrix = doc["jobs"][job].get("strategy", {}).get(
        "matrix", {"tree": ["project"], "kconfig": ["default"], "granule": ["4K"]})
    for tree, kconfig, granule in itertools.product(matrix["tree"], matrix["kconfig"], matrix["granule"]):
        for run in steps:
            run = run.replace('"$base"', "abc123").replace("${{ strategy.job-index }}", "3")
            run = run.replace("${{ matrix.tree == 'project' && 'linux' || matrix.tree }}",
                              "linux" if tree == "project" else tree)
            argv = commands(run, {"kconfig": kconfig, "granule": granule})
            check(argv)
            assert argv[argv.index("--tree") + 1] == ("linux" if tree == "project" else tree)
