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
