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

from .cachedir import locked
from ..errors import GitError
from .git import IDENTITY, ISOLATED, git, is_repo, resolve, uncommitted_diff

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

    def _git(self, *args: str, input: bytes | None = None, env: dict[str, str] | None = None) -> str:
        """git in the clone only: explicit git dir (never an enclosing repository), no user config."""
        return git(self.path, f"--git-dir={self.path / '.git'}", f"--work-tree={self.path}", *args,
                   input=input, env=dict(ISOLATED, **IDENTITY, **(env or {})))

    def _ensure(self) -> None:
        if (self.home / "cloned").exists() and (self.path / ".git" / "HEAD").exists():
            # we hold the session lock: a lock file left by a killed run is stale
            (self.path / ".git" / "index.lock").unlink(missing_ok=True)
            return
        if self.path.exists():
            shutil.rmtree(self.path)
        self.home.mkdir(parents=True, exist_ok=True)
        (self.home / "user-tree").write_text(f"{self.user}\n")
        git(self.home, "clone", "--quiet", "--shared", "--no-checkout", "--no-tags",
            str(self.user), str(self.path), env=ISOLATED)
        (self.home / "cloned").write_text("")

    def checkout(self, commit: str) -> None:
        """Move the checkout; only files that differ are rewritten (kbuild sees their mtimes)."""
        self._abort_am()
        self._git("checkout", "--quiet", "--force", "--detach", commit)
        self._git("clean", "--quiet", "-d", "--force", "-x")

    def _abort_am(self) -> None:
        if (self.path / ".git" / "rebase-apply").exists():
            self._git("am", "--abort")

    def apply_series(self, patches: list[Path]) -> list[str]:
        """`git am` the patches on the current checkout; returns the new commits, oldest first."""
        before = self.head()
        for patch in patches:
            try:
                # --empty=drop: a 0/N cover letter inside a lore mbox is not a patch
                self._git("am", "--3way", "--keep-cr", "--empty=drop", str(patch))
            except GitError as exc:
                self._abort_am()
                raise GitError(f"{patch.name} does not apply on {before[:12]}:\n{exc}") from None
        return self.commits_between(before, "HEAD")

    def commit_uncommitted(self) -> str | None:
        """Carry the user's uncommitted tracked changes over as one commit; None if clean."""
        diff = uncommitted_diff(self.user)
        if not diff:
            return None
        self._git("apply", "--index", "--binary", "-", input=diff)
        self._git("commit", "--quiet", "--no-verify", "-m",
            f"iopt-hil: uncommitted changes of {self.user}")
        return self.head()

    def commits_between(self, base: str, head: str) -> list[str]:
        """base..head, oldest first (what `--each` checks one by one)."""
        return self._git("rev-list", "--reverse", "--topo-order", f"{base}..{head}").split()

    def subject(self, commit: str) -> str:
        return self._git("log", "-1", "--format=%s", commit).strip()

    def head(self) -> str:
        return self._git("rev-parse", "HEAD").strip()

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

