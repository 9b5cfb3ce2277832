"""How commands enter the build root, as root or as an ordinary user.

Every command runs in private mount and pid namespaces (`unshare --pid --fork --kill-child`), so
no mount outlives it and killing it kills everything it started: a build's compilers, QEMU and
whatever QEMU forked. Without root, a user namespace maps the caller's own uid to root inside
and nothing else, so every file a build writes is the caller's on the host. Subordinate ids are
needed once, to make the build root (mmdebstrap --mode=unshare), never to use it.
"""
from __future__ import annotations

import os
import pwd
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from ..errors import HostPrerequisiteError, Requirement

SUBID_FILES = (Path("/etc/subuid"), Path("/etc/subgid"))
SUBID_MIN_COUNT = 65536  # a Debian package may own files up to uid 65534 (nobody)


def rootless() -> bool:
    return os.geteuid() != 0


def unshare_argv() -> list[str]:
    """The namespaces a build-root command runs in."""
    argv = ["unshare"]
    if rootless():
        argv += ["--user", "--map-root-user"]
    return argv + ["--mount", "--propagation", "private", "--pid", "--fork", "--kill-child"]


def _user() -> tuple[str, int]:
    uid = os.geteuid()
    try:
        return pwd.getpwuid(uid).pw_name, uid
    except KeyError:
        return str(uid), uid


@dataclass(frozen=True)
class SubordinateRange:
    start: int
    count: int


def subordinate_id_lines(path: Path) -> list[tuple[str, SubordinateRange]]:
    """Every well-formed `owner:start:count` line of /etc/subuid or /etc/subgid."""
    try:
        text = path.read_text()
    except OSError:
        return []
    found = []
    for line in text.splitlines():
        parts = line.strip().split(":")
        if len(parts) == 3 and parts[1].isdigit() and parts[2].isdigit():
            found.append((parts[0], SubordinateRange(int(parts[1]), int(parts[2]))))
    return found


def subordinate_ranges(path: Path, name: str, uid: int) -> list[SubordinateRange]:
    """The ranges given to `name` (or to `uid`)."""
    return [r for owner, r in subordinate_id_lines(path) if owner in (name, str(uid))]


def namespace_problems() -> list[Requirement]:
    """What this account lacks to run commands in the build root (empty: nothing)."""
    if not rootless():
        return []
    if shutil.which("unshare") is None:
        return [Requirement("`unshare` (util-linux) is not on PATH", "install util-linux")]
    probe = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "true"],
                           capture_output=True, text=True)
    if probe.returncode == 0:
        return []
    return [Requirement(
        f"unprivileged user namespaces are disabled ({probe.stderr.strip() or 'unshare failed'})",
        "as root: `sysctl kernel.unprivileged_userns_clone=1` and `sysctl user.max_user_namespaces=15000` "
        "(Debian's defaults since bookworm); check with `unshare --user --map-root-user true`")]


def bootstrap_problems() -> list[Requirement]:
    """What this account lacks to make a build root without root (empty: nothing)."""
    if not rootless():
        return []
    name, uid = _user()
    problems = []
    for path, tool in zip(SUBID_FILES, ("newuidmap", "newgidmap")):
        if not any(r.count >= SUBID_MIN_COUNT for r in subordinate_ranges(path, name, uid)):
            problems.append(Requirement(
                f"{path} gives {name} no range of {SUBID_MIN_COUNT} subordinate ids",
                f"as root: `usermod --add-subuids 100000-165535 --add-subgids 100000-165535 {name}` "
                f"(adduser does this for new accounts); check with `grep {name} {path}`"))
        if shutil.which(tool, path=os.environ.get("PATH", "") + ":/usr/bin:/usr/sbin") is None:
            problems.append(Requirement(f"`{tool}` is missing", "as root: `apt install uidmap`"))
    return problems


def require(problems: list[Requirement]) -> None:
    """Raise one error naming everything missing at once, before anything is done."""
    if problems:
        raise HostPrerequisiteError(problems)
