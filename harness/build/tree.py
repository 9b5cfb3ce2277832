"""Kernel trees: the default Debian source, or the user's; validation and identity.

A tree is only ever read: builds happen in `O=` directories under the cache.
"""
from __future__ import annotations

import hashlib
import lzma
import os
import re
import shlex
import shutil
import stat
import subprocess
import tarfile
from dataclasses import dataclass
from pathlib import Path

from .buildroot import BuildRoot
from .cachedir import locked
from ..errors import TreeError
from .arch import ARM64 as ARCH
from .toolchain import Bind
from .git import git, is_repo, uncommitted_diff

ABSTRACTION = "rust/kernel/iommu/pgtable.rs"
SKIP_DIRS = {".git", ".pc"}


@dataclass(frozen=True)
class KernelTree:
    path: Path
    origin: str  # "default" (Debian linux-source), "packaged" (debian:NAME) or "user"


@dataclass(frozen=True)
class TreeIdentity:
    """What was tested: a git commit (+ hash of uncommitted changes) or a source version."""

    kind: str  # "git" or "source"
    version: str  # kernelversion from the Makefile
    commit: str = ""
    dirty: str = ""  # sha256 prefix of the uncommitted diff, "" if clean
    source: str = ""  # e.g. "linux-source-7.3=7.3.4-1~bpo13+1"

    def describe(self) -> str:
        if self.kind == "git":
            return f"{self.version} git {self.commit[:12]}" + (f" +dirty:{self.dirty}" if self.dirty else "")
        return f"{self.version} {self.source} content:{self.dirty}".strip()


PACKAGE_PREFIX = "debian:"  # `--tree debian:linux-source-7.2`: a Debian source package


def default_tree(root: BuildRoot) -> KernelTree:
    """Unpack the build root's kernel source package tarball into the cache (once)."""
    version = root.versions().get(ARCH.source_package, "unknown")
    return _unpacked(root, ARCH.source_package, version, root.path / ARCH.source_tarball, "default")


def packaged_tree(root: BuildRoot, package: str) -> KernelTree:
    """Any Debian `linux-source-X.Y` the build root's suites offer, downloaded (not installed)
    into the cache and unpacked there once: how the other API generation is tested."""
    if not re.fullmatch(r"linux-source-\d+\.\d+", package):
        raise TreeError(f"{PACKAGE_PREFIX}{package}: expected a Debian kernel source package "
                        "name like linux-source-7.2")
    debs = root.cache / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    with locked(root.cache / "debs.lock"):
        found = sorted(debs.glob(f"{package}_*_all.deb"))
        if not found:
            script = f"cd {shlex.quote(str(debs))} && apt-get download -q {shlex.quote(package)}"
            proc = root.run(["sh", "-c", script], [Bind(debs)], check=False)
            found = sorted(debs.glob(f"{package}_*_all.deb"))
            if proc.returncode != 0 or not found:
                raise TreeError(f"{PACKAGE_PREFIX}{package}: not available from the build root's "
                                f"suites:\n{proc.stdout.decode(errors='replace')[-600:]}")
        deb = found[-1]
    version = deb.name.split("_")[1]
    tarball = root.cache / "debs" / f"{package}-{version}" / f"usr/src/{package}.tar.xz"
    if not tarball.exists():
        with locked(root.cache / "debs.lock"):
            subprocess.run(["dpkg-deb", "-x", str(deb), str(tarball.parents[2])], check=True)
    return _unpacked(root, package, version, tarball, "packaged")


def _unpacked(root: BuildRoot, package: str, version: str, tarball: Path, origin: str) -> KernelTree:
    dest = root.cache / "trees" / f"linux-source-{version}"  # the version names the kernel
    with locked(root.cache / "trees.lock"):
        if not (dest / ".unpacked").exists():
            if not tarball.exists():
                raise TreeError(f"{tarball} is missing: is {package} installed in the root?")
            tmp = dest.with_name(dest.name + ".tmp")
            tmp.mkdir(parents=True, exist_ok=True)
            extract(tarball, tmp)
            (tmp / package).rename(dest)
            tmp.rmdir()
            (dest / ".unpacked").write_text(version + "\n")
    return KernelTree(dest, origin)


def extract(tarball: Path, into: Path) -> None:
    """Unpacks Debian's own kernel tarball: with the host's xz and tar when it has them (a pipe,
    so decompression and ~90,000 file writes share the two cores: 10 s for linux-source-7.3
    where Python's tarfile takes 23 s of a cold run), else with tarfile."""
    xz, tar = shutil.which("xz"), shutil.which("tar")
    if xz is not None and tar is not None and tarball.name.endswith(".tar.xz"):
        with subprocess.Popen([xz, "-dc", "--", str(tarball)], stdout=subprocess.PIPE) as unxz:
            untar = subprocess.run([tar, "-x", "--no-same-owner", "-C", str(into), "-f", "-"],
                                   stdin=unxz.stdout, stderr=subprocess.PIPE)
            assert unxz.stdout is not None
            unxz.stdout.close()
        if unxz.returncode != 0 or untar.returncode != 0:
            raise TreeError(f"cannot unpack {tarball}: xz exit {unxz.returncode}, tar exit "
                            f"{untar.returncode}: {untar.stderr.decode(errors='replace')[-500:]}")
        return
    try:
        with tarfile.open(tarball) as archive:
            # Debian's own tarball; `filter` exists from Python 3.11.4 (bookworm has 3.11.2)
            if hasattr(tarfile, "data_filter"):
                archive.extractall(into, filter="fully_trusted")
            else:
                archive.extractall(into)
    except (tarfile.TarError, EOFError, lzma.LZMAError) as exc:
        raise TreeError(f"cannot unpack {tarball}: {exc}") from exc


def user_tree(path: Path) -> KernelTree:
    tree = KernelTree(Path(path).resolve(), "user")
    validate(tree)
    return tree


def validate(tree: KernelTree) -> None:
    """Refuse early, with a reason, a tree the harness cannot test."""
    p = tree.path
    if not (p / "Makefile").is_file() or not (p / "arch" / ARCH.name).is_dir():
        raise TreeError(f"{p} is not a kernel tree with arch/{ARCH.name}")
    if not (p / "rust/kernel/lib.rs").is_file() or "config RUST" not in (p / "init/Kconfig").read_text():
        raise TreeError(f"{p} has no Rust support (rust/kernel/lib.rs, CONFIG_RUST)")
    if not (p / ABSTRACTION).is_file():
        raise TreeError(f"{p} lacks {ABSTRACTION}: the kernel::iommu::pgtable abstraction "
                        "(merged in Linux 7.0) is not in this tree")
    if (p / ".config").exists() or (p / "include/config").exists():
        raise TreeError(f"{p} has been configured in-tree (.config); out-of-tree builds need "
                        "`make mrproper` there first (the harness never writes into your tree)")


def kernel_version(path: Path) -> str:
    head = (path / "Makefile").read_text(errors="replace")[:2000]
    fields: dict[str, str] = dict(re.findall(r"^(VERSION|PATCHLEVEL|SUBLEVEL|EXTRAVERSION)[ \t]*=[ \t]*(\S*)", head, re.M))
    version = f"{fields.get('VERSION', '?')}.{fields.get('PATCHLEVEL', '?')}.{fields.get('SUBLEVEL', '?')}"
    return version + fields.get("EXTRAVERSION", "")


def identify(tree: KernelTree, source: str = "", content: str | None = None) -> TreeIdentity:
    """`content`: the tree's `content_key()` if the caller already has it (a git tree's key
    holds its HEAD and dirty digest: git is not asked twice)."""
    version = kernel_version(tree.path)
    if is_repo(tree.path):
        if content and content.startswith("git:"):
            _, commit, dirty = content.split(":")
        else:
            commit, dirty = _repo_state(tree.path)
        return TreeIdentity("git", version, commit=commit, dirty=dirty[:16])
    # No history to name a change by: a content fingerprint tells two states of the tree apart.
    return TreeIdentity("source", version, source=source,
                        dirty=(content or fingerprint(tree.path))[:16])


def content_key(path: Path) -> str:
    """What the build's inputs from this tree are, as a digest that changes when they do.

    A git tree is its HEAD, its uncommitted diff and its untracked files' contents (~0.3 s on
    a kernel tree, where walking every file's metadata takes ~2.4 s); ignored files are build
    products (an O= build refuses a source tree that has them) and are left out. Any other tree
    is walked (`fingerprint`)."""
    if is_repo(path):
        commit, dirty = _repo_state(path)
        return f"git:{commit}:{dirty}"
    return fingerprint(path)


def _repo_state(path: Path) -> tuple[str, str]:
    """(HEAD, digest of the uncommitted diff and of every untracked file, "" if clean)."""
    commit = git(path, "rev-parse", "HEAD").strip()
    diff = uncommitted_diff(path)
    untracked = git(path, "ls-files", "--others", "--exclude-standard", "-z")
    digest = hashlib.sha256(diff)
    for name in sorted(filter(None, untracked.split("\0"))):
        digest.update(name.encode() + b"\0" + _content_digest(path / name))
    return commit, digest.hexdigest() if diff or untracked else ""


def _content_digest(path: Path) -> bytes:
    """A file's content hash, read in chunks; a symlink by its target, a FIFO, socket or device
    by its type alone (reading one could hang on a FIFO or never end on /dev/zero)."""
    try:
        st = os.lstat(path)
    except OSError:
        return b"gone"
    if stat.S_ISLNK(st.st_mode):
        return b"link:" + os.fsencode(os.readlink(path))
    if not stat.S_ISREG(st.st_mode):
        return f"special:{stat.S_IFMT(st.st_mode):o}".encode()
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.digest()


def fingerprint(path: Path) -> str:
    """A cheap content proxy for a whole tree: every file's name, size and mtime (~0.5 s)."""
    digest = hashlib.sha256()
    for dirpath, dirnames, filenames in os.walk(path):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS)
        for name in sorted(filenames):
            full = os.path.join(dirpath, name)
            try:
                st = os.lstat(full)
            except FileNotFoundError:
                continue
            digest.update(f"{full}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return digest.hexdigest()
