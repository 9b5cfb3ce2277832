"""A git repository made from a Debian source tree, standing in for a kernel developer's tree.

Made once per cache (a copy plus `git add`, ~2 min); tests never write into its checkout
except the bisect test, which moves it with `git bisect` the way a developer would and puts
it back. Patches for it are written in a sparse scratch clone, never in the repository.
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from harness.build.cachedir import locked
from harness.build.git import IDENTITY, git

RUST_FILE = "rust/kernel/iommu/pgtable.rs"


@dataclass(frozen=True)
class Edit:
    subject: str
    path: str
    old: str  # must occur exactly once
    new: str


# Reports half of what io-pgtable mapped: a map of N pages claims N/2 -- a contract break.
BREAKS_CONTRACT = Edit("rust: iommu: pgtable: report half the mapped length", RUST_FILE,
                       "        (mapped, ret)\n", "        (mapped / 2, ret)\n")
# A comment: rebuilds the kernel crate, changes nothing a test can see.
HARMLESS = Edit("rust: iommu: pgtable: say why map_pages is unsafe", RUST_FILE,
                "    pub unsafe fn map_pages(\n",
                "    // (iopt-hil test patch: a comment only)\n    pub unsafe fn map_pages(\n")


def kernel_repo(cache: Path, source: Path, name: str = "linux-git") -> Path:
    dest = cache / "selftest" / name
    done = dest.parent / f"{name}.done"
    with locked(cache / f"selftest-{name}.lock"):
        if not done.exists():
            if dest.exists():
                shutil.rmtree(dest)
            shutil.copytree(source, dest, symlinks=True)
            (dest / ".unpacked").unlink(missing_ok=True)
            git(dest, "init", "--quiet", "--initial-branch=master")
            # no background auto-gc rewriting .git while a test snapshots it
            git(dest, "config", "gc.auto", "0")
            git(dest, "config", "maintenance.auto", "false")
            git(dest, "add", "--all", "--force", ".")  # Debian's tarball keeps .gitignore'd files
            git(dest, "commit", "--quiet", "--no-verify", "-m", f"import {source.name}", env=IDENTITY)
            done.write_text(git(dest, "rev-parse", "HEAD"))
    return dest


def write_series(repo: Path, base: str, edits: list[Edit], out: Path) -> list[Path]:
    """Commit each edit in a sparse scratch clone and `git format-patch` them into `out`."""
    scratch = out / "scratch"
    git(out, "clone", "--quiet", "--shared", "--no-checkout", str(repo), str(scratch))
    git(scratch, "sparse-checkout", "set", "--no-cone", *sorted({e.path for e in edits}))
    git(scratch, "checkout", "--quiet", "--detach", base)
    base = git(scratch, "rev-parse", "HEAD").strip()  # "HEAD" moves as we commit
    for edit in edits:
        target = scratch / edit.path
        text = target.read_text()
        assert text.count(edit.old) == 1, f"{edit.old!r} is not unique in {edit.path}"
        target.write_text(text.replace(edit.old, edit.new))
        git(scratch, "commit", "--quiet", "--no-verify", "-am", edit.subject,
            env=dict(IDENTITY, GIT_AUTHOR_NAME="A Developer", GIT_AUTHOR_EMAIL="dev@example.org"))
    git(scratch, "format-patch", "--quiet", "-o", str(out / "patches"), f"{base}..HEAD")
    patches = sorted((out / "patches").glob("*.patch"))
    assert len(patches) == len(edits), patches
    return patches
