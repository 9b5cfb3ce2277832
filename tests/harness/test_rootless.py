"""An ordinary account, made for this test, runs the harness from a fresh copy of this checkout:
the host-only tests, then `./iopt-hil run -k test_one_leaf` on the default tree, making its own
build root and kernel from nothing (mmdebstrap in a user namespace). Nothing under its home may
be owned by anyone else, and nothing of its may outlive the run. Needs root to make the account
(CI runs as root); the account is removed afterwards with everything it owned.
"""
from __future__ import annotations

import os
import pwd
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from harness.build.namespace import SUBID_FILES, subordinate_id_lines, subordinate_ranges
from harness.results.reports import read_junit

pytestmark = pytest.mark.guest
REPO = Path(__file__).resolve().parents[2]


def as_user(name: str, command: str, timeout: float) -> subprocess.CompletedProcess[str]:
    """A login shell of `name`: its own HOME, PATH and environment, none of ours."""
    proc = subprocess.run(["runuser", "--login", name, "--command", command], text=True,
                          capture_output=True, timeout=timeout, stdin=subprocess.DEVNULL)
    sys.stdout.write(f"$ {command}\n{proc.stdout[-4000:]}\n{proc.stderr[-3000:]}\n")
    return proc


def free_subordinate_start() -> int:
    ends = [r.start + r.count for path in SUBID_FILES for _, r in subordinate_id_lines(path)]
    return max([100000, *ends])


@pytest.fixture
def account():
    """A throwaway account as `adduser` makes one: a home directory and subordinate ids."""
    if os.geteuid() != 0:
        pytest.skip("making a throwaway account needs root (CI runs this as root)")
    missing = [tool for tool in ("useradd", "userdel", "runuser", "newuidmap", "newgidmap")
               if shutil.which(tool) is None and not Path("/usr/sbin", tool).exists()]
    assert not missing, f"the host lacks {missing} (Debian: passwd, util-linux, uidmap)"
    name = "iopt" + secrets.token_hex(4)
    subprocess.run(["useradd", "--create-home", "--shell", "/bin/bash", name], check=True)
    try:
        uid = pwd.getpwnam(name).pw_uid
        if not subordinate_ranges(SUBID_FILES[0], name, uid):  # useradd adds them on Debian
            start = free_subordinate_start()
            span = f"{start}-{start + 65535}"
            subprocess.run(["usermod", "--add-subuids", span, "--add-subgids", span, name], check=True)
        yield name
    finally:
        subprocess.run(["pkill", "--signal", "KILL", "--uid", name], check=False)
        time.sleep(1)
        subprocess.run(["userdel", "--remove", "--force", name], check=False,
                       capture_output=True)


def copy_checkout(name: str, dest: str) -> None:
    """This checkout's tracked and unignored files, written by the account itself and committed
    there: what a fresh clone of this working tree would hold."""
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                           cwd=REPO, capture_output=True, check=True).stdout
    existing = b"\0".join(f for f in files.split(b"\0") if f and (REPO / f.decode()).exists())
    pack = subprocess.run(["tar", "--create", "--null", "--files-from=-", "--file=-"], cwd=REPO,
                          input=existing, capture_output=True, check=True).stdout
    subprocess.run(["runuser", "--login", name, "--command",
                    f"mkdir -p {dest} && tar --extract --file=- --directory={dest} && cd {dest} && "
                    "git init -q && git add -A && git -c user.name=t -c user.email=t@t "
                    "commit -qm 'this checkout'"], input=pack, check=True)


def test_a_normal_user_builds_boots_and_passes_from_nothing(account):
    home = Path(pwd.getpwnam(account).pw_dir)
    clone = home / "iopt-hil"
    copy_checkout(account, str(clone))
    started = time.monotonic()
    unit = as_user(account, f"cd {clone} && ./iopt-hil selftest tests/unit -q -p no:cacheprovider --basetemp $HOME/pytest-tmp",
                   timeout=900)
    assert unit.returncode == 0, unit.stdout[-3000:]
    unit_s = time.monotonic() - started
    started = time.monotonic()
    run = as_user(account, f"cd {clone} && ./iopt-hil run -k test_one_leaf", timeout=3600)
    run_s = time.monotonic() - started
    assert run.returncode == 0, (run.stdout + run.stderr)[-4000:]
    cases, props = read_junit(clone / "results" / "junit.xml")
    passed = [c.name for c in cases if c.outcome == "passed"]
    assert any("test_one_leaf" in n for n in passed), [(c.name, c.outcome) for c in cases]
    assert props["build_root"] == "buildroot-trixie"
    cache = home / ".cache" / "iopt-hil"
    assert (cache / "root" / "iopt-hil-stamp.json").exists(), "the build root is not the account's own"
    # Everything under the account's home is the account's: no root-owned or subordinate-id file.
    foreign = subprocess.run(["find", str(home), "!", "-user", account, "-print", "-quit"],
                             capture_output=True, text=True).stdout.strip()
    assert foreign == "", f"not owned by {account}: {foreign}"
    # Nothing of the account's outlives the run: no process, no shared-memory or run directory.
    procs = subprocess.run(["pgrep", "--uid", account, "--list-full"], capture_output=True,
                           text=True).stdout.strip()
    assert procs == "", procs
    uid = pwd.getpwnam(account).pw_uid
    for place in (Path("/dev/shm"), Path(tempfile.gettempdir())):
        left = [p.name for p in place.iterdir() if p.lstat().st_uid == uid]
        ours = [n for n in left if n.startswith(("iopt-hil", "mmdebstrap."))]
        assert ours == [], f"the harness left in {place}: {ours}"
        if left:  # seen once: an empty tmpXXXXXXXX directory, made by no code of ours
            print(f"\nnot the harness's, left in {place} by the account: {left}")
    print(f"\nrootless figures: host-only tests {unit_s:.0f} s; cold `run -k test_one_leaf` "
          f"(build root + kernel + boot) {run_s:.0f} s")
