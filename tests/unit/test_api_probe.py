"""The io_pgtable API probe on synthetic pgtable.rs variants: both released generations, a
future unknown one, and kernel features the module shims."""
from __future__ import annotations

from pathlib import Path

import pytest

from harness.build.api_probe import PGTABLE, probe
from harness.errors import TreeError

COMMON = """
pub struct ARM64LPAES1;
    pub unsafe fn map_pages(&self, iova: usize) -> (usize, Result) {}
    pub unsafe fn unmap_pages(&self, iova: usize) -> usize {}
    pub fn raw_ops(&self) -> *mut bindings::io_pgtable_ops {}
    pub fn raw_cfg(&self) -> *mut bindings::io_pgtable_cfg {}
    pub unsafe fn ttbr(&self) -> u64 {}
    pub fn mair(&self) -> u64 {}
"""
LIFETIME = """
pub struct IoPageTable<'a, F: IoPageTableFmt> {
    _dev: PhantomData<&'a Device<Bound>>,
}
impl<'a, F: IoPageTableFmt> IoPageTable<'a, F> {
    pub fn new(dev: &'a Device<Bound>, config: Config) -> Result<IoPageTable<'a, F>> {}
}
""" + COMMON
DEVRES = """
pub struct IoPageTable<F: IoPageTableFmt> {
}
impl<F: IoPageTableFmt> IoPageTable<F> {
    pub fn new(
        dev: &Device<Bound>,
        config: Config,
    ) -> impl PinInit<Devres<IoPageTable<F>>, Error> + '_ {}
    pub unsafe fn new_raw(dev: &Device<Bound>, config: Config) -> Result<IoPageTable<F>> {}
}
""" + COMMON


def tree(tmp_path: Path, pgtable: str, **files: str) -> Path:
    (tmp_path / PGTABLE).parent.mkdir(parents=True)
    (tmp_path / PGTABLE).write_text(pgtable)
    for rel, text in files.items():
        path = tmp_path / "rust/kernel" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp_path


def test_lifetime_generation_with_every_feature(tmp_path: Path) -> None:
    t = tree(tmp_path, LIFETIME, **{
        "faux.rs": "impl AsRef<Device<device::Bound>> for Registration {",
        "sync.rs": "pub use lock::spinlock::{SpinLockIrq, SpinLockIrqGuard};",
        "task.rs": "    pub fn tgid(&self) -> Pid {",
        "error.rs": "    declare_err!(EOPNOTSUPP, \"Operation not supported.\");"})
    api = probe(t)
    assert api.generation == "lifetime"
    assert api.features == ("faux_bound", "spinlock_irq", "task_tgid", "eopnotsupp")
    assert "--cfg=iopt_pgtable_lifetime" in api.rustflags().split()
    assert "--cfg=iopt_spinlock_irq" in api.rustflags().split()


DRIVER_DATA = "    type Data<'bound>: Send + 'bound;\n"


# What 7.2.12 and 7.3.4 declare: 7.2 has the lifetime-bound driver data and device-managed
# mappings with `dma_handle()`/`dma_read!`; 7.3 adds the aliases, `io_read!` and `dma_address()`.
DMA_7_2 = {
    "pci.rs": DRIVER_DATA + "    fn probe<'bound>(\n        dev: &'bound Device<device::Core<'_>>,\n"
              "        id_info: &'bound Self::IdInfo,\n    ) -> impl PinInit<Self::Data<'bound>, Error>",
    "platform.rs": DRIVER_DATA,
    "pci/io.rs": "    pub fn into_devres(self) -> Result<Devres<Bar<'static, SIZE>>> {",
    "io/mem.rs": "    pub fn into_devres(self) -> Result<Devres<IoMem<'static, SIZE>>> {",
    "dma.rs": "pub struct Coherent<T: KnownSize + ?Sized> {\n    pub fn dma_handle(&self) -> DmaAddress {",
}
DMA_7_3 = dict(DMA_7_2, **{
    "pci.rs": DMA_7_2["pci.rs"].replace("id_info: &'bound", "id_info: Option<&'bound")
              .replace("Self::IdInfo,", "Self::IdInfo>,"),
    "pci/io.rs": "pub type DevresBar<const SIZE: usize = 0> = DevresLt<Bar<'static, SIZE>>;\n"
                 "    pub fn into_devres(self) -> Result<DevresBar<SIZE>> {",
    "io/mem.rs": "pub type DevresIoMem<const SIZE: usize = 0> = DevresLt<IoMem<'static, SIZE>>;\n"
                 "    pub fn into_devres(self) -> Result<DevresIoMem<SIZE>> {",
    "io.rs": "macro_rules! io_read {",
    "device_id.rs": "        static $table_name: $crate::device_id::IdArray<",
    "dma.rs": "pub struct Coherent<T: KnownSize + ?Sized> {\n    pub fn dma_address(&self) -> DmaAddress {",
})
DMA_FEATURES = {"dma", "io_backend", "pci_optional_id_info", "id_table_static"}


def test_device_dma_in_its_7_2_and_7_3_spellings(tmp_path: Path) -> None:
    old = probe(tree(tmp_path / "7.2", DEVRES, **DMA_7_2))
    new = probe(tree(tmp_path / "7.3", LIFETIME, **DMA_7_3))
    assert DMA_FEATURES & set(old.features) == {"dma"}
    assert DMA_FEATURES <= set(new.features)
    assert "--cfg=iopt_io_backend" in new.rustflags().split()
    assert "--cfg=iopt_io_backend" not in old.rustflags().split()


def test_device_dma_needs_every_piece_of_the_lifetime_driver_api(tmp_path: Path) -> None:
    # a tree with the older driver API (probe returns the data itself) has no device DMA
    older = dict(DMA_7_3, **{"platform.rs": "    fn probe(dev: &Device<Core>) -> Result<Pin<KBox<Self>>>;"})
    assert "dma" not in probe(tree(tmp_path / "older", LIFETIME, **older)).features
    unmanaged = dict(DMA_7_2, **{"io/mem.rs": "    pub fn iomap_sized<const SIZE: usize>(self)"})
    assert "dma" not in probe(tree(tmp_path / "unmanaged", DEVRES, **unmanaged)).features


def test_devres_generation_without_newer_kernel_apis(tmp_path: Path) -> None:
    t = tree(tmp_path, DEVRES, **{"faux.rs": "impl AsRef<device::Device> for Registration {",
                                  "error.rs": "declare_err!(ENOTSUPP, \"x\");"})
    api = probe(t)
    assert api.generation == "devres" and api.features == ()
    flags = api.rustflags().split()
    assert "--cfg=iopt_pgtable_devres" in flags and "--cfg=iopt_pgtable_lifetime" not in flags
    assert flags == ["--cfg=iopt_pgtable_devres"]


def test_an_unknown_constructor_is_refused_naming_what_is_missing(tmp_path: Path) -> None:
    future = LIFETIME.replace("pub fn new(dev: &'a Device<Bound>, config: Config)",
                              "pub fn new(dev: &'a Device<Bound>, config: Config, flush: &Flush)")
    with pytest.raises(TreeError) as err:
        probe(tree(tmp_path, future))
    text = str(err.value)
    assert "does not know" in text and "fn new(&'a Device<Bound>, Config)" in text
    assert "new_raw" in text  # and what the other generation would have needed


def test_a_missing_common_method_is_named(tmp_path: Path) -> None:
    with pytest.raises(TreeError, match="missing fn mair"):
        probe(tree(tmp_path, LIFETIME.replace("pub fn mair(", "pub fn memattr(")))


def test_no_abstraction_at_all(tmp_path: Path) -> None:
    with pytest.raises(TreeError, match="lacks rust/kernel/iommu/pgtable.rs"):
        probe(tmp_path)
