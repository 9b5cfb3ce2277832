"""The guest's initramfs: arm64 busybox + dropbear from Debian, our /init, the test module.

Two archives concatenated (the kernel unpacks both): a cached base with the userland and the
module, and a tiny per-run part holding that run's SSH public key.
"""
from __future__ import annotations

import hashlib
import io
import os
import shlex
from pathlib import Path, PurePosixPath
from typing import Callable, Sequence

from ..build.buildroot import BuildRoot, remove_tree
from ..build.cachedir import locked
from .cpio import CpioWriter, Member, members_from_dir
from .elfdeps import runtime_files
from .guest_tools import DEBUGFS_CTL, IOPT
from ..errors import ImageError, ToolchainError
from ..build.toolchain import Bind
from ..build.arch import ARM64 as ARCH

GUEST_PACKAGES = ("busybox-static", "dropbear-bin", "libc6", "libcrypt1", "libtomcrypt1",
                  "libtommath1", "libgmp10", "zlib1g")
PROGRAMS = ("usr/bin/busybox", "usr/sbin/dropbear")  # all the guest runs, with the libraries
# they load; the rest of the packages (glibc's 20 MB of gconv modules, docs) stays out
READY = "IOPT-HIL-READY"
MODULE_FAILED = "IOPT-HIL-MODULE-FAILED"

INIT = f"""#!/bin/sh
# iopt-hil guest init: mounts, network, sshd with the run's key, the test module.
export PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm /tmp /run /var/log /root/.ssh /etc/dropbear
mount -t devpts devpts /dev/pts
mount -t debugfs debugfs /sys/kernel/debug
mount -t tmpfs tmpfs /tmp
ip link set lo up
ip link set eth0 up && ip addr add 10.0.2.15/24 dev eth0 && ip route add default via 10.0.2.2
cp /etc/iopt-hil/authorized_keys /root/.ssh/authorized_keys
chmod 700 /root /root/.ssh && chmod 600 /root/.ssh/authorized_keys
if insmod /lib/modules/iopt_hil.ko && [ -e {DEBUGFS_CTL} ]; then
    echo "iopt-hil: module loaded"
else
    echo "{MODULE_FAILED}"
fi
dropbear -R -E -s -p 22 -P /run/dropbear.pid
echo "{READY} $(uname -r)"
while true; do sleep 3600; done
"""


def guest_sysroot(root: BuildRoot, progress: Callable[[str], None] = print) -> Path:
    """arm64 Debian packages unpacked into the cache (once)."""
    tag = hashlib.sha256(" ".join(GUEST_PACKAGES).encode()).hexdigest()[:12]
    dest = root.cache / "guest" / tag
    with locked(root.cache / "guest.lock"):
        if (dest / ".done").exists():
            return dest / "sysroot"
        if dest.exists():
            remove_tree(dest)
        debs = dest / "debs"
        debs.mkdir(parents=True)
        progress("guest userland: fetching arm64 " + " ".join(GUEST_PACKAGES))
        sysroot = shlex.quote(str(dest / "sysroot"))
        script = (f"cd {shlex.quote(str(debs))} && apt-get download "
                  + " ".join(f"{p}:{ARCH.debian_arch}" for p in GUEST_PACKAGES)
                  + f' && for d in *.deb; do dpkg-deb -x "$d" {sysroot}; done')
        try:
            root.run(["sh", "-c", script], [Bind(dest)])
        except ToolchainError as exc:
            raise ImageError(f"could not fetch the guest packages: {exc}") from exc
        (dest / ".done").write_text("\n".join(GUEST_PACKAGES))
    return dest / "sysroot"


def base_members(sysroot: Path, module: Path, extra_modules: Sequence[Path] = ()) -> list[Member]:
    members = [Member.directory(d) for d in ("etc", "proc", "sys", "dev", "root", "tmp", "run", "var")]
    # trixie is merged-/usr: the packages ship /usr/bin etc., the top-level names are links.
    members += [Member.symlink(link, f"usr/{link}") for link in ("bin", "sbin", "lib")]
    members += _program_members(sysroot)
    if (sysroot / "etc").is_dir():
        members += members_from_dir(sysroot / "etc", "etc")
    members += [
        Member.directory("usr/lib/modules"),
        Member.file("usr/lib/modules/iopt_hil.ko", module.read_bytes()),
        Member.directory("usr/lib/modules/kunit"),
        *[Member.file(f"usr/lib/modules/kunit/{m.name}", m.read_bytes()) for m in extra_modules],
        Member.file("init", INIT.encode(), 0o755),
        Member.file("usr/bin/iopt", IOPT.encode(), 0o755),
        Member.file("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n"),
        Member.file("etc/group", b"root:x:0:\n"),
        Member.file("etc/shells", b"/bin/sh\n"),
    ]
    busybox_links = ["sh", "mount", "ip", "insmod", "rmmod", "lsmod", "cat", "echo", "ls", "mkdir",
                     "chmod", "cp", "sleep", "uname", "dmesg", "grep", "head", "tail", "ps", "kill",
                     "sync", "poweroff", "true", "false", "dd", "hexdump", "wc", "sed", "awk",
                     "tr", "rm", "mv", "env", "date", "vi", "less", "seq", "printf", "test", "["]
    members += [Member.symlink(f"usr/bin/{name}", "busybox") for name in busybox_links
                if not (sysroot / "usr/bin" / name).exists()]
    return members


def _program_members(sysroot: Path) -> list[Member]:
    """The guest's programs and what they load (see elfdeps), with their directories."""
    files = runtime_files(sysroot, list(PROGRAMS))
    dirs = {parent for f in files for parent in PurePosixPath(f).parents if str(parent) != "."}
    members = [Member.directory(str(d)) for d in sorted(dirs, key=lambda d: (len(d.parts), d))]
    for name in files:
        full = sysroot / name
        members.append(Member.symlink(name, os.readlink(full)) if full.is_symlink() else
                       Member.file(name, full.read_bytes(), full.stat().st_mode & 0o7777))
    return members


def write_base(path: Path, sysroot: Path, module: Path, extra_modules: Sequence[Path] = ()) -> None:
    missing = [p for p in PROGRAMS if not (sysroot / p).exists()]
    if missing:
        raise ImageError(f"{sysroot} lacks {', '.join(missing)}")
    buf = io.BytesIO()
    writer = CpioWriter(buf)
    for member in base_members(sysroot, module, extra_modules):
        writer.add(member)
    writer.close()
    path.write_bytes(buf.getvalue())


def write_run_part(path: Path, authorized_key: str) -> None:
    buf = io.BytesIO()
    writer = CpioWriter(buf)
    writer.add(Member.directory("etc/iopt-hil", 0o700))
    writer.add(Member.file("etc/iopt-hil/authorized_keys", authorized_key.encode(), 0o600))
    writer.close()
    path.write_bytes(buf.getvalue())


def build_initramfs(root: BuildRoot, module: Path, rundir: Path, authorized_key: str,
                    progress: Callable[[str], None] = print,
                    extra_modules: Sequence[Path] = ()) -> Path:
    """Base archive (cached by module content) + per-run key archive, concatenated."""
    sysroot = guest_sysroot(root, progress)
    digest = hashlib.sha256(b"".join(m.read_bytes() for m in (module, *extra_modules))
                            + INIT.encode() + IOPT.encode() + " ".join(PROGRAMS).encode()
                            ).hexdigest()[:16]
    base = root.cache / "guest" / f"base-{digest}.cpio"
    with locked(root.cache / "guest.lock"):
        if not base.exists():
            tmp = base.with_suffix(".tmp")
            write_base(tmp, sysroot, module, extra_modules)
            tmp.rename(base)
    run_part = rundir / "run.cpio"
    write_run_part(run_part, authorized_key)
    image = rundir / "initramfs.cpio"
    image.write_bytes(base.read_bytes() + run_part.read_bytes())
    return image
