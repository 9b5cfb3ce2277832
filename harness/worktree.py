"""The private checkout that `verify` and `bisect-run` build: one per user repository.

`git clone --shared --no-checkout` under the cache borrows the user's objects read-only
(through alternates), so nothing -- no worktree entry, ref, index, lock or object -- is ever
written into the user's repository. The clone's checkout moves between revisions and its path
never changes, so its `O=` build directory is reused: base -> head of a one-file patch is one
incremental rebuild, never a second full build. Patches are applied here with `git am`.
"""
from __future__ import annotations

import hashlib
import shutil
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from .buildroot import locked
from .errors import GitError
from .git import IDENTITY, git, is_repo, resolve, uncommitted_diff

PATCH_SUFFIXES = (".patch", ".mbox", ".mbx", ".eml", ".diff")


@dataclass(frozen=True)
class Revision:
    """A commit of the private clone, and what it is called in reports."""

    commit: str
    label: str  # "base", "head", "1/3 <subject>"

    @property
    def short(self) -> str:
        return self.commit[:12]


class PrivateWorktree:
    def __init__(self, user: Path, cache: Path) -> None:
        self.user = Path(user).resolve()
        if not is_repo(self.user):
            raise GitError(f"{self.user} is not a git repository: verify and bisect-run compare "
                           "commits (use `iopt-hil run --tree` for a plain source tree)")
        key = hashlib.sha256(str(self.user).encode()).hexdigest()[:16]
        self.home = cache / "worktrees" / key
        self.path = self.home / "tree"
        self._lock = cache / "worktrees" / f"{key}.lock"

    @contextmanager
    def session(self) -> Iterator["PrivateWorktree"]:
        """Exclusive use of the checkout for one command (a second verify of the same tree waits)."""
        with locked(self._lock):
            self._ensure()
            yield self

    def _ensure(self) -> None:
        if (self.home / "cloned").exists():
            return
        if self.path.exists():
            shutil.rmtree(self.path)
        self.home.mkdir(parents=True, exist_ok=True)
        (self.home / "user-tree").write_text(f"{self.user}\n")
        git(self.home, "clone", "--quiet", "--shared", "--no-checkout", "--no-tags",
            str(self.user), str(self.path))
        (self.home / "cloned").write_text("")

    def checkout(self, commit: str) -> None:
        """Move the checkout; only files that differ are rewritten (kbuild sees their mtimes)."""
        if (self.path / ".git" / "rebase-apply").exists():
            git(self.path, "am", "--abort")
        git(self.path, "checkout", "--quiet", "--force", "--detach", commit)
        git(self.path, "clean", "--quiet", "-d", "--force", "-x")

    def apply_series(self, patches: list[Path]) -> list[str]:
        """`git am` the patches on the current checkout; returns the new commits, oldest first."""
        before = self.head()
        for patch in patches:
            try:
                git(self.path, "am", "--3way", "--keep-cr", str(patch), env=IDENTITY)
            except GitError as exc:
                git(self.path, "am", "--abort")
                raise GitError(f"{patch.name} does not apply on {before[:12]}:\n{exc}") from None
        return git(self.path, "rev-list", "--reverse", f"{before}..HEAD").split()

    def commit_uncommitted(self) -> str | None:
        """Carry the user's uncommitted tracked changes over as one commit; None if clean."""
        diff = uncommitted_diff(self.user)
        if not diff:
            return None
        git(self.path, "apply", "--index", "--binary", "-", input=diff)
        git(self.path, "commit", "--quiet", "--no-verify", "-m",
            f"iopt-hil: uncommitted changes of {self.user}", env=IDENTITY)
        return self.head()

    def head(self) -> str:
        return git(self.path, "rev-parse", "HEAD").strip()

    def user_head(self) -> str:
        """The user's HEAD (plus uncommitted changes) checked out here; returns that commit."""
        self.checkout(resolve(self.user, "HEAD"))
        return self.commit_uncommitted() or self.head()


def patch_files(path: Path) -> list[Path]:
    """One mbox/patch file, or a directory of them in name order (cover letters skipped)."""
    path = Path(path)
    if path.is_file():
        return [path.resolve()]
    if not path.is_dir():
        raise GitError(f"{path}: no such patch file or directory")
    found = sorted(p.resolve() for p in path.iterdir()
                   if p.suffix in PATCH_SUFFIXES and "cover-letter" not in p.name)
    if not found:
        raise GitError(f"{path} holds no {'/'.join(PATCH_SUFFIXES)} files")
    return found

