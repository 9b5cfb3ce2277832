"""The managed Debian trixie build root: kernel toolchain, QEMU and arm64 guest packages.

Made once with debootstrap under the cache (about a minute and a half), then reused. Nothing is
installed into the host: every command runs chrooted inside a private mount namespace.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Sequence

from ..errors import ToolchainError
from .arch import ARM64 as ARCH
from .cachedir import locked
from .mirror import debian_mirror
from .progress import DEBOOTSTRAP_STEP, LogMonitor, OnSteps, periodic_lines
from .toolchain import Bind, ToolchainInfo, chroot_argv, run_logged

PACKAGES = (
    "make gcc libc6-dev flex bison bc libelf-dev libssl-dev cpio kmod python3 xz-utils "
    "clang lld llvm rustc rust-src rustfmt bindgen qemu-system-arm git ca-certificates"
).split()


@dataclass(frozen=True)
class Suite:
    """A Debian suite a build root can be made of; trixie is the default (its QEMU, guest
    packages and kernel source serve every run), a newer one only for a tree whose tool
    minimums trixie does not meet."""

    name: str
    apt_suites: tuple[str, ...]  # the sources.list lines
    extra: tuple[str, ...] = ()  # packages from a pinned suite
    dirname: str = ""  # under the cache: trixie keeps `root`, where it always was

    @property
    def directory(self) -> str:
        return self.dirname or f"root-{self.name}"


SUITES = {
    "trixie": Suite("trixie", ("trixie", "trixie-backports"),
                    (f"{ARCH.source_package}/trixie-backports",), dirname="root"),
    "sid": Suite("sid", ("sid",)),
}
DEFAULT_SUITE = "trixie"
RECORDED = ("clang", "lld", "rustc", "bindgen", "qemu-system-arm", ARCH.source_package)
STAMP = "iopt-hil-stamp.json"
# debootstrap + apt step lines of one build root creation (counted in root.log, Nov 2026).
ROOT_STEPS = 891
ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
       "HOME": "/root", "LANG": "C.UTF-8", "DEBIAN_FRONTEND": "noninteractive"}


def mounts_below(path: Path) -> list[str]:
    """Mount points at or below `path` in this namespace (a root with any must not be deleted)."""
    prefix = os.path.realpath(path)
    found = []
    with open("/proc/self/mountinfo") as info:
        for line in info:
            point = line.split()[4].replace("\\040", " ")
            if point == prefix or point.startswith(prefix + "/"):
                found.append(point)
    return found


def remove_tree(path: Path) -> None:
    """rm -rf that refuses a directory with live mounts below it (a bound /dev would go too)."""
    live = mounts_below(path)
    if live:
        raise ToolchainError(f"refusing to delete {path}: still mounted below it: {live}")
    shutil.rmtree(path, ignore_errors=False)


class BuildRoot:
    """A Debian chroot under the cache (`root` for trixie); implements the `Toolchain` protocol."""

    def __init__(self, cache: Path, suite: str = DEFAULT_SUITE) -> None:
        self.cache = cache
        self.suite = SUITES[suite]
        self.path = cache / self.suite.directory
        self.info = ToolchainInfo(f"buildroot-{suite}")

    @property
    def ready(self) -> bool:
        return (self.path / STAMP).exists()

    def ensure(self, progress: Any = print, on_steps: OnSteps | None = None) -> "BuildRoot":
        """Create the root if it is missing; `on_steps` sees that live (default: a line every
        15 s through `progress`)."""
        with locked(self.cache / f"{self.path.name}.lock"):
            if not self.ready:
                self._create(progress, on_steps or periodic_lines(progress))
        self.info = ToolchainInfo(f"buildroot-{self.suite.name}", self.versions())
        return self

    def versions(self) -> dict[str, str]:
        data: dict[str, str] = json.loads((self.path / STAMP).read_text())["versions"]
        return data

    def argv(self, argv: Sequence[str], binds: Sequence[Bind] = (),
             cwd: Path | None = None) -> list[str]:
        return chroot_argv(self.path, argv, binds, ENV, cwd)

    def run(self, argv: Sequence[str], binds: Sequence[Bind] = (), *, cwd: Path | None = None,
            stdout: int | IO[Any] | None = None, check: bool = True,
            timeout: float | None = None) -> subprocess.CompletedProcess[bytes]:
        return run_logged(self.argv(argv, binds, cwd), stdout=stdout, check=check,
                          timeout=timeout)

    def _create(self, progress: Any, on_steps: OnSteps) -> None:
        if shutil.which("debootstrap") is None:
            raise ToolchainError("debootstrap is not installed on the host "
                                 "(`apt-get install debootstrap`, or run ./iopt-hil which does)")
        mirror = debian_mirror()
        suite = self.suite
        tmp = self.cache / f"{self.path.name}.tmp"
        for stale in (tmp, self.path):
            if stale.exists():
                remove_tree(stale)
        started = time.monotonic()
        progress(f"build root: debootstrap {suite.name} from {mirror} into {tmp} (about 30 s)")
        log = self.cache / f"{self.path.name}.log"
        log.unlink(missing_ok=True)  # the monitor must not count the last creation's lines
        with open(log, "wb") as out, LogMonitor(log, DEBOOTSTRAP_STEP, "build root", ROOT_STEPS,
                                                on_steps):
            run_logged(["debootstrap", "--variant=minbase", suite.name, str(tmp), mirror], stdout=out)
            (tmp / "etc/apt/sources.list").write_text(
                "".join(f"deb {mirror} {name} main\n" for name in suite.apt_suites))
            shutil.copy("/etc/resolv.conf", tmp / "etc/resolv.conf")
            progress("build root: installing clang, rustc, bindgen, qemu, linux-source (about 60 s)")
            script = (f"dpkg --add-architecture {ARCH.debian_arch} && apt-get update -q && "
                      "apt-get install -y -q --no-install-recommends "
                      + " ".join(PACKAGES + list(suite.extra)))
            run_logged(chroot_argv(tmp, ["sh", "-c", script], (), ENV), stdout=out)
            fmt = "${Package}=${Version}\\n"
            query = run_logged(chroot_argv(tmp, ["dpkg-query", "-W", "-f", fmt, *RECORDED], (), ENV),
                               check=False)  # a suite without the kernel source package is fine
        versions = dict(line.split("=", 1) for line in query.stdout.decode().split()
                        if "=" in line and not line.endswith("="))
        (tmp / STAMP).write_text(json.dumps({"suite": suite.name, "versions": versions}, indent=1))
        tmp.rename(self.path)
        progress(f"build root ready in {time.monotonic() - started:.0f} s: {versions}")
