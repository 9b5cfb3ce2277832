"""A full disk or a permission problem is one clear line and exit status 2, not a traceback."""
from __future__ import annotations

import errno

import pytest

from harness import cli


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EACCES, errno.ENOENT])
def test_os_errors_are_one_line(code: int, monkeypatch: pytest.MonkeyPatch,
                                capsys: pytest.CaptureFixture[str]) -> None:
    def fail(args: object) -> int:
        raise OSError(code, "simulated", "/var/cache/iopt-hil/builds/x/build.log")

    monkeypatch.setattr(cli, "cmd_build", fail)
    assert cli.main(["build"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("iopt-hil: error: [Errno") and "build.log" in err[0]
