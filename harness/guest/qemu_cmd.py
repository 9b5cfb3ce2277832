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
    # The top of guest RAM that the kernel is told does not exist (`mem=`): the DMA tests'
    # buffers, written and read by the host and the edu device and by nothing else.
    dma_window_mib: int = 64
    # QEMU's edu PCI devices behind the SMMU, one per iova of a `probe` request (8, the module's
    # MAX_PROBES): each transfer waits ~100 ms of the edu's timer, so the edus of one probe
    # wait together, and a probe of 8 iovas is one round, not two.
    edus: int = 8

    @property
    def dma_window(self) -> tuple[int, int]:
        """(guest-physical start, size) of the RAM the kernel never uses."""
        size = self.dma_window_mib << 20
        return self.arch.ram_base + (self.memory_mib << 20) - size, size

    @property
    def qmp_socket(self) -> Path:
        return self.rundir / "qmp.sock"

    @property
    def kernel_cmdline(self) -> str:
        # No IOMMU driver owns the SMMU: the test module does, and lets every stream but the
        # edu's bypass it, so the NIC's DMA is never translated. The base config leaves
        # arm-smmu-v3 out; initcall_blacklist keeps it off a kernel whose config has it anyway.
        # deferred_probe_timeout=0: the PCI devices the DT's iommu-map names would otherwise
        # wait for an IOMMU driver that never comes. mem=: see `dma_window`.
        base = (f"console={self.arch.console} earlycon rdinit=/init panic=-1 oops=panic "
                "printk.devkmsg=on loglevel=7 deferred_probe_timeout=0 initcall_blacklist=arm_smmu_driver_init "
                f"mem={self.memory_mib - self.dma_window_mib}M")
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
        # The DMA masters of the device tests, behind the SMMU; no address clamping.
        *[arg for _ in range(spec.edus) for arg in ("-device", "edu,dma_mask=0xffffffffffffffff")],
        "-kernel", str(spec.kernel),
        "-initrd", str(spec.initrd),
        "-append", spec.kernel_cmdline,
        *(("-gdb", f"tcp:127.0.0.1:{spec.gdb_port}") if spec.gdb_port else ()),
        *arch.extra,
        *spec.extra_args,
    ]
