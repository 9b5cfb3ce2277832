"""QEMU command lines as data: a frozen spec in, argv out. Pure, so it is tested on the host."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class ArchParams:
    """Per-architecture QEMU knowledge (one instance per arch, no branches on arch names)."""

    binary: str
    machine: str
    cpu: str
    console: str
    ram_base: int
    extra: tuple[str, ...] = ()


ARM64 = ArchParams(binary="qemu-system-aarch64", machine="virt,iommu=smmuv3", cpu="max",
                   console="ttyAMA0", ram_base=0x4000_0000)


@dataclass(frozen=True)
class MachineSpec:
    kernel: Path
    initrd: Path
    rundir: Path
    shm_path: Path
    memory_mib: int = 1024
    smp: int = 1
    arch: ArchParams = ARM64
    cmdline_extra: tuple[str, ...] = ()
    extra_args: tuple[str, ...] = field(default=())
    gdb_port: int = 0  # QEMU's gdb stub on 127.0.0.1:gdb_port (0: none)

    @property
    def qmp_socket(self) -> Path:
        return self.rundir / "qmp.sock"

    @property
    def kernel_cmdline(self) -> str:
        # iommu.passthrough=1: the SMMU probes and runs, but the NIC's stream bypasses it. With
        # translation on, virtio-net traffic under QEMU 10.0's emulated SMMUv3 raised sporadic
        # F_TRANSLATION faults on the NIC's own DMA domain (reproduced with SSH streams alone,
        # no io-pgtable activity, lazy or strict invalidation, 1 or 2 vCPUs). The tables under
        # test are never attached to a device, so nothing they are checked for depends on it.
        base = (f"console={self.arch.console} earlycon rdinit=/init panic=-1 oops=panic "
                "printk.devkmsg=on loglevel=7 iommu.passthrough=1")
        # nokaslr: gdb's symbols from vmlinux must be where the kernel runs
        return " ".join([base, *(("nokaslr",) if self.gdb_port else ()), *self.cmdline_extra])


def qemu_argv(spec: MachineSpec) -> list[str]:
    """The full QEMU command line: SSH forwarded to 127.0.0.1 on a port QEMU picks."""
    arch = spec.arch
    return [
        arch.binary,
        "-M", f"{arch.machine},memory-backend=ram0",
        "-cpu", arch.cpu,
        "-smp", str(spec.smp),
        "-m", f"{spec.memory_mib}M",
        "-object", f"memory-backend-file,id=ram0,size={spec.memory_mib}M,"
                   f"mem-path={spec.shm_path},share=on",
        "-nodefaults", "-no-reboot", "-display", "none", "-monitor", "none",
        "-chardev", "stdio,id=con,signal=off",
        "-serial", "chardev:con",
        "-qmp", f"unix:{spec.qmp_socket}",  # a client: the harness listens before QEMU starts
        # restrict=on: the guest reaches nothing (not the host's loopback, not beyond); the
        # forwarded SSH port is the only way in, and it listens on 127.0.0.1 only.
        "-netdev", "user,id=net0,restrict=on,hostfwd=tcp:127.0.0.1:0-:22",
        "-device", "virtio-net-pci,netdev=net0,romfile=,iommu_platform=on,disable-legacy=on",
        "-kernel", str(spec.kernel),
        "-initrd", str(spec.initrd),
        "-append", spec.kernel_cmdline,
        *(("-gdb", f"tcp:127.0.0.1:{spec.gdb_port}") if spec.gdb_port else ()),
        *arch.extra,
        *spec.extra_args,
    ]
