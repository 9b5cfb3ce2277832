"""Cache paths with spaces or shell metacharacters reach commands intact (never executed), and
a tree's odd untracked files (a FIFO, a link to /dev/zero) cannot hang or exhaust its identity."""
from __future__ import annotations

import os
import stat
import subprocess
import threading
from pathlib import Path

from harness.build.toolchain import Bind, chroot_argv
from harness.build.tree import KernelTree, identify

from .test_tree import _fake_tree

STUB = '#!/bin/sh\nprintf "%s\\n" "$(basename "$0")" "$@" >> "$STUB_LOG"\n'


def test_chroot_script_quotes_every_path(tmp_path: Path) -> None:
    evil = tmp_path / "cache with space; $(touch PWNED) `touch PWNED2`"
    root, bind = evil / "root", evil / "builds"
    bind.mkdir(parents=True)
    stubs = tmp_path / "stubs"
    stubs.mkdir()
    for tool in ("mount", "mkdir", "chroot"):
        (stubs / tool).write_text(STUB)
        (stubs / tool).chmod(0o755)
    argv = chroot_argv(root, ["make", "O=x y"], [Bind(bind, readonly=True)], {"A": "b c"}, cwd=bind)
    assert argv[0] == "unshare" and {"--mount", "--pid", "--fork", "--kill-child"} <= set(argv)
    log = tmp_path / "log"
    env = {"PATH": f"{stubs}:/usr/bin:/bin", "STUB_LOG": str(log)}
    subprocess.run(["sh", "-c", argv[-1]], cwd=tmp_path, env=env, check=True)
    assert not list(tmp_path.rglob("PWNED*")), "a path was executed by the shell"
    words = log.read_text().splitlines()
    assert f"{root}/dev" in words and f"{root}/proc" in words
    assert os.path.realpath(bind) in words and f"{root}{os.path.realpath(bind)}" in words
    assert str(root) in words  # chroot's first argument, whole


def test_untracked_fifo_and_dev_zero_link_do_not_hang(tmp_path: Path) -> None:
    tree = _fake_tree(tmp_path)
    git = ["git", "-C", str(tree), "-c", "user.email=t@t", "-c", "user.name=t"]
    subprocess.run(git + ["init", "-q"], check=True)
    subprocess.run(git + ["add", "-A"], check=True)
    subprocess.run(git + ["commit", "-qm", "base"], check=True)
    os.mkfifo(tree / "a-fifo")
    (tree / "zeros").symlink_to("/dev/zero")
    result: list[str] = []
    worker = threading.Thread(target=lambda: result.append(identify(KernelTree(tree, "user")).dirty),
                              daemon=True)
    worker.start()
    worker.join(10)
    assert result and result[0], "identity of a tree with a FIFO and a /dev/zero link hung"
    assert stat.S_ISFIFO(os.lstat(tree / "a-fifo").st_mode)  # and nothing was changed
