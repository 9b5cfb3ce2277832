"""The managed Debian trixie build root: kernel toolchain, QEMU and arm64 guest packages.

Made once with mmdebstrap under the cache (about two minutes), as root or, without root, in a
user namespace; then reused. Nothing is installed into the host: every command runs chrooted in
private namespaces (see `namespace`), and without root every file in it is the caller's.
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
from .mmdebstrap import mmdebstrap
from .namespace import bootstrap_problems, namespace_problems, require, rootless
from .progress import BOOTSTRAP_STEP, LogMonitor, OnSteps, periodic_lines
from .toolchain import Bind, ToolchainInfo, chroot_argv, die_with_parent, run_logged

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
# mmdebstrap's download/unpack/setup lines of one build root creation (counted in root.log).
ROOT_STEPS = 726
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
    shutil.rmtree(path, onerror=_writable_and_retry)


def _writable_and_retry(func: Any, name: str, _exc: Any) -> None:
    """A user-made root keeps its packages' read-only directories: open the parent, retry."""
    parent = os.path.dirname(name)
    os.chmod(parent, os.stat(parent).st_mode | 0o700)
    func(name)


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
        15 s through `progress`). Whatever this account lacks is named first, all at once."""
        require(namespace_problems() + ([] if self.ready else bootstrap_problems()))
        with locked(self.cache / f"{self.path.name}.lock"):
            if not self.ready:
                self._create(progress, on_steps or periodic_lines(progress))
        self.info = ToolchainInfo(f"buildroot-{self.suite.name}", self.versions())
        return self

    def ensure_packages(self, packages: Sequence[str], progress: Any = print) -> None:
        """Packages only some commands need (gdb-multiarch for `iopt-hil gdb`), installed into
        the existing root on first use rather than into every root at creation."""
        with locked(self.cache / f"{self.path.name}.lock"):
            stamp = json.loads((self.path / STAMP).read_text())
            missing = [p for p in packages if p not in stamp.get("extra", [])]
            if not missing:
                return
            progress(f"build root: installing {' '.join(missing)} (once)")
            script = "apt-get install -y -q --no-install-recommends " + " ".join(missing)
            proc = run_logged(chroot_argv(self.path, ["sh", "-c", script], (), ENV), check=False)
            if proc.returncode != 0:
                raise ToolchainError(f"could not install {' '.join(missing)} into {self.path}:\n"
                                     + proc.stdout.decode(errors="replace")[-1500:])
            stamp["extra"] = sorted(set(stamp.get("extra", [])) | set(missing))
            (self.path / STAMP).write_text(json.dumps(stamp, indent=1))

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
        tool = mmdebstrap(self.cache)
        mirror = debian_mirror()
        suite = self.suite
        tmp = self.cache / f"{self.path.name}.tmp"
        for stale in (tmp, self.path):
            if stale.exists():
                remove_tree(stale)
        started = time.monotonic()
        mode = "unshare" if rootless() else "root"
        progress(f"build root: mmdebstrap --mode={mode} {suite.name} from {mirror}: clang, rustc, "
                 "bindgen, qemu, linux-source (about 2 min)")
        log = self.cache / f"{self.path.name}.log"
        log.unlink(missing_ok=True)  # the monitor must not count the last creation's lines
        tmp.mkdir()
        with open(log, "wb") as out, LogMonitor(log, BOOTSTRAP_STEP, "build root", ROOT_STEPS,
                                                on_steps):
            if mode == "root":  # root owns what it writes: straight into the directory
                made = run_logged(bootstrap_argv(tool, mode, suite, mirror, str(tmp)), stdout=out,
                                  check=False)
                if made.returncode:
                    raise ToolchainError(f"making the build root failed (mmdebstrap "
                                         f"{made.returncode}): see {log.name}")
            else:  # a tarball, so that every file becomes the user's, not a subordinate uid's
                unpack_tarball(bootstrap_argv(tool, mode, suite, mirror), tmp, out)
        (tmp / "etc/apt/apt.conf.d/99iopt-hil").write_text(
            "# no _apt download user: without root only one uid exists in here\n"
            'APT::Sandbox::User "root";\n')
        shutil.copy("/etc/resolv.conf", tmp / "etc/resolv.conf")
        fmt = "${Package}=${Version}\\n"
        query = run_logged(chroot_argv(tmp, ["dpkg-query", "-W", "-f", fmt, *RECORDED], (), ENV),
                           check=False)  # a suite without the kernel source package is fine
        versions = dict(line.split("=", 1) for line in query.stdout.decode().split()
                        if "=" in line and not line.endswith("="))
        (tmp / STAMP).write_text(json.dumps({"suite": suite.name, "versions": versions}, indent=1))
        tmp.rename(self.path)
        progress(f"build root ready in {time.monotonic() - started:.0f} s: {versions}")


def bootstrap_argv(tool: Path, mode: str, suite: Suite, mirror: str, target: str = "-") -> list[str]:
    """mmdebstrap writing `suite` into `target` (`-`: a tarball on stdout): the host's
    architecture plus the guest's (for the guest userland's packages), apt's lists kept
    (`apt-get download` uses them later). Root skips the tarball: writing and unpacking
    2.5 GB again took 12 s of a cold run."""
    host_arch = subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True,
                               check=True).stdout.strip()
    arches = ",".join(dict.fromkeys((host_arch, ARCH.debian_arch)))
    return [str(tool), f"--mode={mode}", "--variant=minbase", "--verbose",
            f"--architectures={arches}", "--include=" + ",".join(PACKAGES + list(suite.extra)),
            "--skip=cleanup/apt/lists", suite.name, target,
            *(f"deb {mirror} {name} main" for name in suite.apt_suites)]


def unpack_tarball(producer: list[str], dest: Path, log: IO[bytes]) -> None:
    """`producer | tar -x` into `dest`: as root tar keeps owners, as a user every file becomes
    the user's. Device nodes are left out: /dev is the host's, bound at every use."""
    make = subprocess.Popen(producer, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log,
                            preexec_fn=die_with_parent)
    assert make.stdout is not None
    untar = subprocess.Popen(["tar", "--extract", "--file=-", f"--directory={dest}",
                              "--exclude=./dev/*"], stdin=make.stdout, stdout=log, stderr=log,
                             preexec_fn=die_with_parent)
    make.stdout.close()  # tar holds the pipe now: mmdebstrap sees EPIPE if tar dies
    untar_status, make_status = untar.wait(), make.wait()
    if make_status or untar_status:
        raise ToolchainError(f"making the build root failed (mmdebstrap {make_status}, tar "
                             f"{untar_status}): see {log.name}")
