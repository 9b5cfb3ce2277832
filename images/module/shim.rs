// SPDX-License-Identifier: GPL-2.0

//! Everything that differs between the kernel versions this module builds against, in one place.
//!
//! The harness probes the tree (`harness/build/api_probe.py`) and passes one `--cfg` per fact:
//! `iopt_pgtable_lifetime` (7.3+: `IoPageTable<'a, F>`, `new(&'a Device<Bound>, ..)`) or
//! `iopt_pgtable_devres` (7.2: `IoPageTable<F>`, `unsafe new_raw(..)`), and `iopt_faux_bound`,
//! `iopt_spinlock_irq`, `iopt_task_tgid` (no longer used: replies are keyed by the task itself),
//! `iopt_eopnotsupp` where the tree has those APIs. The
//! rest of the module uses only the names below. A new API generation is one more branch here.

use kernel::{
    device::{Bound, Device},
    faux,
    iommu::pgtable::{Config, IoPageTable, ARM64LPAES1},
    prelude::*,
};

/// The table type every other file uses.
#[cfg(iopt_pgtable_lifetime)]
pub(crate) type Pgtable = IoPageTable<'static, ARM64LPAES1>;
#[cfg(iopt_pgtable_devres)]
pub(crate) type Pgtable = IoPageTable<ARM64LPAES1>;

/// Creates a table for `dev`. Every table is dropped before the faux registration that binds
/// `dev` (the module's field order guarantees it), which is what both generations require.
pub(crate) fn new_table(dev: &'static Device<Bound>, cfg: Config) -> Result<Pgtable> {
    #[cfg(iopt_pgtable_lifetime)]
    {
        IoPageTable::<ARM64LPAES1>::new(dev, cfg)
    }
    #[cfg(iopt_pgtable_devres)]
    {
        // SAFETY: `new_raw` requires the table to be dropped before `dev` is unbound. `dev` is
        // the module's faux device, unbound only when its registration drops, and the module
        // drops every table (with its debugfs file) before that registration.
        unsafe { IoPageTable::<ARM64LPAES1>::new_raw(dev, cfg) }
    }
}

/// The bound device of a faux registration.
pub(crate) fn bound_device(reg: &faux::Registration) -> &Device<Bound> {
    #[cfg(iopt_faux_bound)]
    {
        let fdev: &faux::Device<Bound> = reg.as_ref();
        fdev.as_ref()
    }
    #[cfg(not(iopt_faux_bound))]
    {
        let dev: &Device = reg.as_ref();
        // SAFETY: `Device<Ctx>` is `repr(transparent)` over the same `struct device` for every
        // context, so the cast is layout-preserving. A faux device is bound to the faux driver
        // from `faux_device_create` until the registration is dropped, and the returned
        // reference borrows the registration, so it cannot outlive that binding. (Later
        // kernels state the same by returning `&faux::Device<Bound>`.)
        unsafe { &*core::ptr::from_ref(dev).cast::<Device<Bound>>() }
    }
}

/// `EOPNOTSUPP`, which older kernels do not name in `kernel::error::code`.
pub(crate) fn eopnotsupp() -> Error {
    #[cfg(iopt_eopnotsupp)]
    {
        EOPNOTSUPP
    }
    #[cfg(not(iopt_eopnotsupp))]
    {
        Error::from_errno(-(kernel::bindings::EOPNOTSUPP as i32))
    }
}

/// The lock the hang trigger spins under: with interrupts off where the kernel offers
/// `SpinLockIrq`, a plain spinlock (preemption off) elsewhere. Either stops the CPU making
/// progress, which is what the harness's hang detection must notice.
#[cfg(iopt_spinlock_irq)]
pub(crate) type HangLock<T> = kernel::sync::SpinLockIrq<T>;
#[cfg(not(iopt_spinlock_irq))]
pub(crate) type HangLock<T> = kernel::sync::SpinLock<T>;

/// Initializer of a [`HangLock`].
#[cfg(iopt_spinlock_irq)]
#[macro_export]
macro_rules! new_hang_lock {
    ($val:expr) => { kernel::new_spinlock_irq!($val) };
}
/// Initializer of a [`HangLock`].
#[cfg(not(iopt_spinlock_irq))]
#[macro_export]
macro_rules! new_hang_lock {
    ($val:expr) => { kernel::new_spinlock!($val) };
}

/// A driver's device id table: 7.3's tables name their own modalias symbol
/// (`iopt_id_table_static`); 7.2's macros take that symbol's name as a second argument.
#[cfg(iopt_id_table_static)]
#[macro_export]
macro_rules! device_id_table {
    ($kind:ident, $name:ident, $alias:ident, $info:ty, $ids:tt) => {
        kernel::$kind!($name, $info, $ids);
    };
}
/// A driver's device id table (see above).
#[cfg(not(iopt_id_table_static))]
#[macro_export]
macro_rules! device_id_table {
    ($kind:ident, $name:ident, $alias:ident, $info:ty, $ids:tt) => {
        kernel::$kind!($name, $alias, $info, $ids);
    };
}

/// Device DMA (`smmu.rs`, `edu.rs`, `hw.rs`): the MMIO, coherent-memory and delay APIs of the
/// kernels whose bus abstractions give drivers lifetime-bound data (`iopt_dma`, 7.2.12 and
/// later), in their 7.3 spelling (`iopt_io_backend`) or their 7.2 one.
#[cfg(iopt_dma)]
pub(crate) use dma_io::*;

#[cfg(iopt_dma)]
mod dma_io {
    use kernel::{
        device::{Bound, Device},
        dma::Coherent,
        io::Io,
        prelude::*,
        time::{delay::fsleep, Delta},
    };
    #[cfg(iopt_io_backend)]
    use kernel::{io::mem::DevresIoMem, pci::DevresBar};

    /// 7.2 names the revocable mappings by what they are.
    #[cfg(not(iopt_io_backend))]
    type DevresIoMem<const SIZE: usize> =
        kernel::devres::Devres<kernel::io::mem::IoMem<'static, SIZE>>;
    #[cfg(not(iopt_io_backend))]
    type DevresBar<const SIZE: usize> = kernel::devres::Devres<kernel::pci::Bar<'static, SIZE>>;

    /// A device's registers, mapped for as long as it is bound: after unbind every access fails
    /// with `ENXIO` (the mapping is revoked), never touching an unmapped address.
    macro_rules! revocable_regs {
        ($name:ident, $devres:ty) => {
            pub(crate) struct $name($devres);

            // Each device uses the widths it needs; the macro gives both all four.
            #[allow(dead_code)]
            impl $name {
                pub(crate) fn new(regs: $devres) -> Self {
                    Self(regs)
                }

                pub(crate) fn read32(&self, off: usize) -> Result<u32> {
                    let io = self.0.try_access().ok_or(ENXIO)?;
                    (&*io).try_read32(off)
                }

                pub(crate) fn write32(&self, val: u32, off: usize) -> Result {
                    let io = self.0.try_access().ok_or(ENXIO)?;
                    (&*io).try_write32(val, off)
                }

                pub(crate) fn read64(&self, off: usize) -> Result<u64> {
                    let io = self.0.try_access().ok_or(ENXIO)?;
                    (&*io).try_read64(off)
                }

                pub(crate) fn write64(&self, val: u64, off: usize) -> Result {
                    let io = self.0.try_access().ok_or(ENXIO)?;
                    (&*io).try_write64(val, off)
                }
            }
        };
    }

    revocable_regs!(SmmuRegs, DevresIoMem<{ crate::smmu::layout::SIZE }>);
    revocable_regs!(EduRegs, DevresBar<{ crate::edu::BAR_SIZE }>);

    /// Coherent memory the SMMU reads and writes (stream table, CD, queues), as 64-bit words.
    pub(crate) struct DmaWords(Coherent<[u64]>);

    impl DmaWords {
        pub(crate) fn alloc(dev: &Device<Bound>, words: usize) -> Result<Self> {
            Ok(Self(Coherent::zeroed_slice(dev, words, GFP_KERNEL)?))
        }

        /// The bus address the SMMU is given (its DMA is untranslated: the physical address).
        pub(crate) fn addr(&self) -> u64 {
            #[cfg(iopt_io_backend)]
            return self.0.dma_address();
            #[cfg(not(iopt_io_backend))]
            return self.0.dma_handle();
        }

        pub(crate) fn get(&self, i: usize) -> Result<u64> {
            #[cfg(iopt_io_backend)]
            return Ok(kernel::io::io_read!(&self.0, [try: i]));
            #[cfg(not(iopt_io_backend))]
            return Ok(kernel::dma_read!(self.0, [try: i]));
        }

        pub(crate) fn set(&self, i: usize, val: u64) -> Result {
            #[cfg(iopt_io_backend)]
            kernel::io::io_write!(&self.0, [try: i], val);
            #[cfg(not(iopt_io_backend))]
            kernel::dma_write!(self.0, [try: i], val);
            Ok(())
        }
    }

    /// Sleeps (a request's polls run in process context).
    pub(crate) fn delay_us(us: u64) {
        fsleep(Delta::from_micros(us as i64));
    }
}
