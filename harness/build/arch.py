"""Per-architecture build facts as data, like `guest.qemu_cmd.ArchParams` is for QEMU: one
record per architecture, no branches on architecture names anywhere else."""
from __future__ import annotations

from dataclasses import dataclass

RELEASE_FILE = "include/config/kernel.release"  # in the O= directory, for every architecture


@dataclass(frozen=True)
class KernelArch:
    name: str  # kbuild's ARCH=, and the directory under arch/
    debian_arch: str  # dpkg architecture of the guest's userland packages
    image: str  # the bootable image inside the O= directory
    source_package: str  # the Debian kernel source package of the default tree

    @property
    def source_tarball(self) -> str:
        """Where the source package puts its tarball inside the build root."""
        return f"usr/src/{self.source_package}.tar.xz"


ARM64 = KernelArch(name="arm64", debian_arch="arm64", image="arch/arm64/boot/Image",
                   source_package="linux-source-7.3")
