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
    assert argv[0].endswith("/iopt-hil") or argv[0] == "sudo"
    if argv[0] == "sudo":
        argv = argv[2:]
    return argv[1:]


def check(argv: list[str]) -> None:
    args, unknown = parser().parse_known_args(argv)
    assert unknown in ([], ["-n", "2"]), unknown
    fragment_paths(args.kconfig)  # raises for an unknown fragment
    assert set(getattr(args, "granule", [])) <= set(GRANULE_NAMES)


def test_gitlab_matrix_cells_and_verify_job_parse():
    doc = yaml.safe_load((EXAMPLES / "gitlab-ci.yml").read_text())
    matrix = doc["regression"]["parallel"]["matrix"][0]
    cells = list(itertools.product(matrix["KCONFIG"], matrix["GRANULE"]))
    assert len(cells) == 6
    for kconfig, granule in cells:
        for line in doc["regression"]["script"]:
            argv = commands(line, {"KCONFIG": kconfig, "GRANULE": granule, "RESULTS": "/tmp/r",
                                   "CI_PROJECT_DIR": "/builds/linux"})
            check(argv)
            assert not argv[argv.index("--results") + 1].startswith("/builds/linux")
    for line in doc["verify"]["script"]:
        argv = commands(line, {"CI_PROJECT_DIR": "/builds/linux", "RESULTS": "/tmp/r",
                               "CI_MERGE_REQUEST_DIFF_BASE_SHA": "abc123"})
        assert argv[0] == "verify" and "--each" in argv
        check(argv)


@pytest.mark.parametrize("job", ["regression", "verify"])
def test_github_jobs_parse(job):
    doc = yaml.safe_load((EXAMPLES / "github-actions.yml").read_text())
    steps = [line for s in doc["jobs"][job]["steps"] if "run" in s
             for line in s["run"].split("\n") if "iopt-hil/iopt-hil" in line]
    assert steps
    matrix = doc["jobs"][job].get("strategy", {}).get("matrix", {"kconfig": ["default"], "granule": ["4K"]})
    for kconfig, granule in itertools.product(matrix["kconfig"], matrix["granule"]):
        for run in steps:
            run = run.replace('"$base"', "abc123")
            check(commands(run, {"kconfig": kconfig, "granule": granule}))
