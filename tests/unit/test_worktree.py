"""The private worktree on a small git repository: the user's repository is never written."""
import subprocess

import pytest

from harness.errors import GitError
from harness.build.git import IDENTITY, git
from harness.build.worktree import PrivateWorktree, patch_files

from ..tree_snapshot import differences, snapshot


@pytest.fixture
def user_repo(tmp_path):
    repo = tmp_path / "linux"
    repo.mkdir()
    git(repo, "init", "-q", "--initial-branch=master")
    (repo / "pgtable.rs").write_text("fn map() -> usize {\n    mapped\n}\n")
    (repo / "Makefile").write_text("VERSION = 7\n")
    git(repo, "add", ".")
    git(repo, "commit", "-qm", "base", env=IDENTITY)
    return repo


def series(repo, tmp_path, edits):
    """format-patch files made in a scratch clone, as a developer would mail them."""
    scratch = tmp_path / "scratch"
    git(tmp_path, "clone", "-q", str(repo), str(scratch))
    for i, (name, text) in enumerate(edits):
        (scratch / name).write_text(text)
        git(scratch, "commit", "-qam", f"patch {i}", env=IDENTITY)
    out = tmp_path / "patches"
    git(scratch, "format-patch", "-q", "--cover-letter", "-o", str(out), f"HEAD~{len(edits)}")
    return out


def test_patches_apply_in_the_clone_and_the_user_repo_is_untouched(user_repo, tmp_path):
    out = series(user_repo, tmp_path, [("pgtable.rs", "fn map() -> usize {\n    mapped / 2\n}\n"),
                                       ("Makefile", "VERSION = 8\n")])
    files = patch_files(out)
    assert [f.name[:4] for f in files] == ["0001", "0002"]  # cover letter skipped
    before = snapshot(user_repo)
    wt = PrivateWorktree(user_repo, tmp_path / "cache")
    with wt.session():
        base = git(user_repo, "rev-parse", "HEAD").strip()
        wt.checkout(base)
        commits = wt.apply_series(files)
        assert len(commits) == 2
        assert "mapped / 2" in (wt.path / "pgtable.rs").read_text()
        wt.checkout(base)  # back and forth: the checkout moves, the path stays
        assert "mapped / 2" not in (wt.path / "pgtable.rs").read_text()
        wt.checkout(commits[-1])
        assert (wt.path / "Makefile").read_text() == "VERSION = 8\n"
    assert differences(before, snapshot(user_repo)) == []
    assert wt.path == PrivateWorktree(user_repo, tmp_path / "cache").path


def test_a_patch_that_does_not_apply_is_a_clear_error_and_the_clone_recovers(user_repo, tmp_path):
    out = series(user_repo, tmp_path, [("pgtable.rs", "fn map() -> usize {\n    0\n}\n")])
    (user_repo / "pgtable.rs").write_text("something else entirely\n")
    git(user_repo, "commit", "-qam", "conflicting", env=IDENTITY)
    wt = PrivateWorktree(user_repo, tmp_path / "cache")
    with wt.session():
        wt.checkout(git(user_repo, "rev-parse", "HEAD").strip())
        with pytest.raises(GitError, match="does not apply"):
            wt.apply_series(patch_files(out))
        wt.checkout(git(user_repo, "rev-parse", "HEAD~1").strip())
        assert wt.apply_series(patch_files(out))


def test_user_head_carries_uncommitted_changes(user_repo, tmp_path):
    (user_repo / "pgtable.rs").write_text("work in progress\n")
    before = snapshot(user_repo)
    wt = PrivateWorktree(user_repo, tmp_path / "cache")
    with wt.session():
        head = wt.user_head()
        assert head != git(user_repo, "rev-parse", "HEAD").strip()
        assert (wt.path / "pgtable.rs").read_text() == "work in progress\n"
    assert differences(before, snapshot(user_repo)) == []


def test_not_a_git_tree_and_missing_patches_are_refused(tmp_path):
    with pytest.raises(GitError, match="not a git repository"):
        PrivateWorktree(tmp_path, tmp_path / "cache")
    with pytest.raises(GitError, match="no such patch"):
        patch_files(tmp_path / "nope.mbox")
    (tmp_path / "empty").mkdir()
    with pytest.raises(GitError, match="holds no"):
        patch_files(tmp_path / "empty")


def test_a_file_that_is_not_a_patch_says_so(user_repo, tmp_path):
    junk = tmp_path / "notes.patch"
    junk.write_text("just some notes, no diff here\n")
    wt = PrivateWorktree(user_repo, tmp_path / "cache")
    with wt.session():
        wt.checkout(git(user_repo, "rev-parse", "HEAD").strip())
        with pytest.raises(GitError, match="notes.patch does not apply"):
            wt.apply_series([junk])


def test_user_diff_settings_do_not_break_carrying_changes_over(user_repo, tmp_path):
    git(user_repo, "config", "diff.noprefix", "true")
    git(user_repo, "config", "color.diff", "always")
    (user_repo / "pgtable.rs").write_text("changed\n")
    wt = PrivateWorktree(user_repo, tmp_path / "cache")
    with wt.session():
        wt.user_head()
        assert (wt.path / "pgtable.rs").read_text() == "changed\n"


def test_an_mbox_with_a_cover_letter_applies(user_repo, tmp_path):
    out = series(user_repo, tmp_path, [("pgtable.rs", "fn map() -> usize {\n    1\n}\n")])
    mbox = tmp_path / "series.mbox"
    mbox.write_text("".join(p.read_text() for p in sorted(out.iterdir())))  # 0000 cover first
    wt = PrivateWorktree(user_repo, tmp_path / "cache")
    with wt.session():
        wt.checkout(git(user_repo, "rev-parse", "HEAD").strip())
        assert len(wt.apply_series(patch_files(mbox))) == 1
