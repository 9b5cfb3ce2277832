"""Read-only git queries on a user's tree, and commands in the harness's private clones.

Every call sets GIT_OPTIONAL_LOCKS=0 so that even `git status`-like reads never refresh the
user's index; the harness never runs a writing git command inside a user's repository.
"""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

from ..errors import GitError

# Commits the harness makes (git am, uncommitted changes) are its own, in its own clone.
IDENTITY = {"GIT_COMMITTER_NAME": "iopt-hil", "GIT_COMMITTER_EMAIL": "iopt-hil@localhost",
            "GIT_AUTHOR_NAME": "iopt-hil", "GIT_AUTHOR_EMAIL": "iopt-hil@localhost"}
# In the private clone the user's global and system config (commit.gpgsign, core.hooksPath,
# diff.noprefix, ...) must not change what git does.
ISOLATED = {"GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}


def _env(extra: dict[str, str] | None = None) -> dict[str, str]:
    # -C picks the repository; a GIT_DIR inherited from a hook or `git bisect run` must not.
    env = {k: v for k, v in os.environ.items()
           if k not in ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_OBJECT_DIRECTORY")}
    return dict(env, GIT_OPTIONAL_LOCKS="0", GIT_TERMINAL_PROMPT="0", **(extra or {}))


def git_bytes(path: Path, *args: str, input: bytes | None = None,
              env: dict[str, str] | None = None) -> bytes:
    proc = subprocess.run(["git", "-C", str(path), *args], capture_output=True, input=input,
                          env=_env(env))
    if proc.returncode != 0:
        raise GitError(f"git {' '.join(args)} failed in {path}:\n"
                       f"{(proc.stderr or proc.stdout).decode(errors='replace')[-2000:]}")
    return proc.stdout


def git(path: Path, *args: str, input: bytes | None = None, env: dict[str, str] | None = None) -> str:
    return git_bytes(path, *args, input=input, env=env).decode(errors="replace")


def is_repo(path: Path) -> bool:
    return (path / ".git").exists()


def resolve(path: Path, rev: str) -> str:
    """A revision of the user's repository as a full commit id (clear error if unknown)."""
    try:
        return git(path, "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}").strip()
    except GitError:
        raise GitError(f"{rev!r} is not a commit in {path}") from None


def uncommitted_diff(path: Path) -> bytes:
    """Tracked changes against HEAD, binary-safe; untracked files are not part of it."""
    # diff-index, not `git diff`: the porcelain refreshes a stat-dirty index and writes it
    # even with GIT_OPTIONAL_LOCKS=0 (a touched file rewrote the user's .git/index);
    # explicit format: the user's diff.noprefix, color or textconv settings must not leak in
    return git_bytes(path, "diff-index", "-p", "HEAD", "--binary", "--no-ext-diff", "--no-color",
                     "--no-textconv", "--src-prefix=a/", "--dst-prefix=b/")
