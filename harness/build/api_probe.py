"""Which generation of the Rust io_pgtable API a tree has, read from what its sources declare.

Not from the version number: backports and distro patches move APIs between versions. The
answer becomes `--cfg` flags for the test module, whose version-specific code sits in one small
shim (images/module/shim.rs). A new API generation costs one `Generation` entry here and one
shim branch there. A tree whose pgtable.rs matches no generation is refused before any build,
naming what was not found.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import TreeError

PGTABLE = "rust/kernel/iommu/pgtable.rs"


@dataclass(frozen=True)
class Generation:
    name: str  # becomes --cfg iopt_pgtable_<name>
    kernels: str  # where it was seen, for messages and provenance
    declares: tuple[tuple[str, str], ...]  # (what, regex) that pgtable.rs must all declare


# Both generations share map_pages/unmap_pages/ttbr/mair/raw_cfg/raw_ops (COMMON).
GENERATIONS = (
    Generation("lifetime", "7.3-rc and later, rust-next", (
        ("struct IoPageTable<'a, F>", r"pub struct IoPageTable<'a,\s*F\b"),
        ("fn new(&'a Device<Bound>, Config) -> Result<IoPageTable<'a, F>>",
         r"pub fn new\(\s*dev:\s*&'a Device<Bound>,\s*config:\s*Config,?\s*\)\s*->\s*Result<"),
    )),
    Generation("devres", "7.2.x and mainline before 7.3", (
        ("struct IoPageTable<F>", r"pub struct IoPageTable<F\b"),
        ("unsafe fn new_raw(&Device<Bound>, Config) -> Result<IoPageTable<F>>",
         r"pub unsafe fn new_raw\(\s*dev:\s*&Device<Bound>,\s*config:\s*Config,?\s*\)\s*->\s*Result<"),
    )),
)
COMMON = (
    ("format ARM64LPAES1", r"\bARM64LPAES1\b"),
    ("unsafe fn map_pages", r"pub unsafe fn map_pages\("),
    ("unsafe fn unmap_pages", r"pub unsafe fn unmap_pages\("),
    ("unsafe fn ttbr", r"pub unsafe fn ttbr\("),
    ("fn mair", r"pub fn mair\("),
    ("fn raw_ops", r"pub fn raw_ops\("),
    ("fn raw_cfg", r"pub fn raw_cfg\("),
)


@dataclass(frozen=True)
class Feature:
    """A kernel API the module uses where the tree has it, with a shim fallback where not."""

    name: str  # becomes --cfg iopt_<name>
    path: str
    regex: str
    also: tuple[tuple[str, str], ...] = ()  # more (path, regex) the tree must all declare

    def present(self, tree: Path) -> bool:
        return all(re.search(rx, _read(tree, path))
                   for path, rx in ((self.path, self.regex), *self.also))


FEATURES = (
    Feature("faux_bound", "rust/kernel/faux.rs", r"impl AsRef<Device<device::Bound>> for Registration"),
    Feature("spinlock_irq", "rust/kernel/sync.rs", r"\bSpinLockIrq\b"),
    Feature("task_tgid", "rust/kernel/task.rs", r"pub fn tgid\(&self\)"),
    Feature("eopnotsupp", "rust/kernel/error.rs", r"declare_err!\(EOPNOTSUPP\b"),
    # Device DMA through the SMMU (images/module/{smmu,edu,hw,drivers}.rs): bus drivers whose data
    # is bound to a lifetime, device-managed MMIO mappings and `dma::Coherent` (7.2.12 and later).
    Feature("dma", "rust/kernel/pci.rs", r"type Data<'bound>: Send \+ 'bound;", (
        ("rust/kernel/platform.rs", r"type Data<'bound>: Send \+ 'bound;"),
        ("rust/kernel/pci/io.rs", r"pub fn into_devres\(self\)"),
        ("rust/kernel/io/mem.rs", r"pub fn into_devres\(self\)"),
        ("rust/kernel/dma.rs", r"pub struct Coherent<"),
    )),
    # 7.3's I/O rework: `DevresBar`/`DevresIoMem` aliases, `io_read!`/`io_write!` on coherent
    # memory and `dma_address()` (7.2: `Devres<Bar<..>>`, `dma_read!`/`dma_write!`, `dma_handle()`).
    Feature("io_backend", "rust/kernel/pci/io.rs", r"pub type DevresBar<", (
        ("rust/kernel/io/mem.rs", r"pub type DevresIoMem<"),
        ("rust/kernel/io.rs", r"macro_rules! io_read\b"),
        ("rust/kernel/dma.rs", r"pub fn dma_address\(&self\)"),
    )),
    # Device id tables that name their own modalias symbol (7.3); 7.2's macros take its name.
    Feature("id_table_static", "rust/kernel/device_id.rs",
            r"static \$table_name: \$crate::device_id::IdArray<"),
    # A PCI probe's id info is optional in 7.3 (a dynamic id has none); 7.2 passes a reference.
    Feature("pci_optional_id_info", "rust/kernel/pci.rs",
            r"id_info: Option<&'bound Self::IdInfo>,\s*\) -> impl PinInit"),
)


@dataclass(frozen=True)
class ApiProbe:
    generation: str
    kernels: str
    features: tuple[str, ...]

    @property
    def cfgs(self) -> tuple[str, ...]:
        return (f"iopt_pgtable_{self.generation}",) + tuple(f"iopt_{f}" for f in self.features)

    def rustflags(self) -> str:
        """For kbuild's rustflags-y. (No --check-cfg: any one turns on cfg checking, and kbuild
        declares none of its CONFIG_* cfgs for out-of-tree modules.)"""
        return " ".join(f"--cfg={c}" for c in self.cfgs)

    def describe(self) -> str:
        return f"{self.generation} ({self.kernels}); features: {','.join(self.features) or 'none'}"


def _read(tree: Path, rel: str) -> str:
    try:
        return (tree / rel).read_text(errors="replace")
    except OSError:
        return ""


def probe(tree: Path) -> ApiProbe:
    """The tree's API generation and kernel features; TreeError if pgtable.rs is of no known shape."""
    source = _read(tree, PGTABLE)
    if not source:
        raise TreeError(f"{tree} lacks {PGTABLE}: the kernel::iommu::pgtable abstraction is not "
                        "in this tree")
    missing_common = [what for what, rx in COMMON if not re.search(rx, source)]
    matches = [g for g in GENERATIONS if all(re.search(rx, source) for _, rx in g.declares)]
    if missing_common or len(matches) != 1:
        found = {g.name: [w for w, rx in g.declares if not re.search(rx, source)] for g in GENERATIONS}
        lacks = "; ".join(f"{name} generation lacks {', '.join(w)}" for name, w in found.items() if w)
        raise TreeError(f"{tree}/{PGTABLE} has an io_pgtable API this harness does not know: "
                        + (f"missing {', '.join(missing_common)}; " if missing_common else "")
                        + (lacks or "it matches more than one generation"))
    features = tuple(f.name for f in FEATURES if f.present(tree))
    return ApiProbe(matches[0].name, matches[0].kernels, features)
