from dataclasses import replace
from pathlib import Path

from harness.guest.qemu_cmd import MachineSpec, qemu_argv
from harness.pgtable.device import PROBES

HW_RS = Path(__file__).parents[2] / "images" / "module" / "hw.rs"


def _module_const(name: str) -> int:
    import re
    m = re.search(rf"const {name}: usize = (\d+);", HW_RS.read_text())
    assert m, f"{name} not found in {HW_RS}"
    return int(m.group(1))


def test_argv_has_smmu_private_ports_and_shared_ram():
    spec = MachineSpec(Path("/k/Image"), Path("/r/initrd"), Path("/run/x"), Path("/dev/shm/t"))
    argv = qemu_argv(spec)
    joined = " ".join(argv)
    assert "virt,iommu=smmuv3,memory-backend=ram0" in argv
    assert "hostfwd=tcp:127.0.0.1:0-:22" in joined
    assert "iommu_platform=on" in joined and "romfile=," in joined
    assert "share=on" in joined and "mem-path=/dev/shm/t" in joined
    netdev = argv[argv.index("-netdev") + 1]
    assert "restrict=on" in netdev.split(",") and "hostfwd=tcp:127.0.0.1:0-:22" in netdev
    qmp = argv[argv.index("-qmp") + 1]
    assert qmp == "unix:/run/x/qmp.sock", "QEMU connects to the harness's socket, no server=on"
    assert "panic=-1" in spec.kernel_cmdline and "-no-reboot" in argv


def test_the_edu_sits_behind_the_smmu_and_the_kernel_keeps_out_of_the_dma_window():
    spec = MachineSpec(Path("/k"), Path("/i"), Path("/r"), Path("/s"), memory_mib=1024)
    argv = qemu_argv(spec)
    assert argv.count("edu,dma_mask=0xffffffffffffffff") == spec.edus
    # one edu per iova of a probe: a probe is one round of the edu timer, not two
    assert spec.edus == PROBES == _module_const("MAX_PROBES") == _module_const("MAX_EDUS")
    assert "default-bus-bypass-iommu" not in " ".join(argv)  # the root bus is behind the SMMU
    start, size = spec.dma_window
    assert (start, size) == (0x4000_0000 + (1024 - 64 << 20), 64 << 20)
    words = spec.kernel_cmdline.split()
    assert "mem=960M" in words and "deferred_probe_timeout=0" in words
    assert not any(w.startswith("iommu.passthrough") for w in words)


def test_hang_heuristic_counts_samples_in_one_window():
    from harness.guest.machine import _mostly_within

    idle_with_a_tick = (0x1000, 0x1000, 0x1000, 0x9000, 0x1000, 0x1004, 0x1000, 0x1000)
    assert _mostly_within(idle_with_a_tick, 256) == 7
    assert _mostly_within((0x1000, 0x2000, 0x3000, 0x4000), 256) == 1


def test_the_gdb_stub_listens_on_loopback_only_and_kaslr_is_off():
    spec = MachineSpec(kernel=Path("/k"), initrd=Path("/i"), rundir=Path("/r"), shm_path=Path("/s"))
    assert "-gdb" not in qemu_argv(spec) and "nokaslr" not in spec.kernel_cmdline
    argv = qemu_argv(replace(spec, gdb_port=41234))
    assert argv[argv.index("-gdb") + 1] == "tcp:127.0.0.1:41234"
    assert "nokaslr" in replace(spec, gdb_port=41234).kernel_cmdline
