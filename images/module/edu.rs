// SPDX-License-Identifier: GPL-2.0

//! QEMU's `edu` PCI device (1234:11e8), the DMA master whose transfers go through the SMMU.
//!
//! BAR0: 0x00 identification, 0x80 DMA source, 0x88 destination, 0x90 count, 0x98 command (bit 0
//! run, cleared when the transfer is done; bit 1 direction, 1 = from the device's buffer to
//! RAM). The device's 4 KiB buffer sits at device address 0x40000. QEMU aborts (hw_error) on a
//! transfer outside that buffer, so every transfer is checked here first.

use crate::shim::EduRegs;
use kernel::prelude::*;

pub(crate) const VENDOR: u16 = 0x1234;
pub(crate) const DEVICE: u16 = 0x11e8;
/// BAR0 spans 1 MiB.
pub(crate) const BAR_SIZE: usize = 0x10_0000;

const ID: usize = 0x00;
const DMA_SRC: usize = 0x80;
const DMA_DST: usize = 0x88;
const DMA_CNT: usize = 0x90;
const DMA_CMD: usize = 0x98;
const CMD_RUN: u64 = 1 << 0;
const CMD_FROM_DEVICE: u64 = 1 << 1;
/// The device's buffer, in its own address space.
pub(crate) const BUF_ADDR: u64 = 0x4_0000;
pub(crate) const BUF_SIZE: u64 = 0x1000;
/// The identification register reads 0xRRrr00ed (major, minor revision).
const ID_MAGIC_MASK: u32 = 0xffff;
const ID_MAGIC: u32 = 0x00ed;
/// A transfer takes ~100 ms of virtual time; give up after this many polls of 1 ms.
const DMA_POLLS: u32 = 5000;

/// A bound edu device.
pub(crate) struct Edu {
    regs: EduRegs,
    /// The device's stream ID at the SMMU: its PCI requester ID (bus 0, identity-mapped).
    pub(crate) sid: u32,
}

impl Edu {
    pub(crate) fn new(regs: EduRegs, sid: u32) -> Result<Self> {
        let id = regs.read32(ID)?;
        if id & ID_MAGIC_MASK != ID_MAGIC {
            pr_err!("edu identification register reads {:#x}\n", id);
            return Err(ENODEV);
        }
        Ok(Edu { regs, sid })
    }

    /// Moves `len` bytes between `iova` (through the SMMU) and the device's buffer at `off`, and
    /// waits for the device; returns the time it took, in nanoseconds.
    pub(crate) fn transfer(&self, iova: u64, off: u64, len: u64, to_device: bool) -> Result<i64> {
        let start = kernel::time::Instant::<kernel::time::Monotonic>::now();
        self.start(iova, off, len, to_device)?;
        self.wait()?;
        Ok(start.elapsed().as_nanos())
    }

    /// Starts a transfer (see [`Edu::transfer`]) without waiting for it.
    pub(crate) fn start(&self, iova: u64, off: u64, len: u64, to_device: bool) -> Result {
        if len == 0 || len > BUF_SIZE || off > BUF_SIZE - len {
            return Err(EINVAL);
        }
        if self.regs.read64(DMA_CMD)? & CMD_RUN != 0 {
            return Err(EBUSY);
        }
        let buf = BUF_ADDR + off;
        let (src, dst, cmd) = if to_device {
            (iova, buf, CMD_RUN)
        } else {
            (buf, iova, CMD_RUN | CMD_FROM_DEVICE)
        };
        self.regs.write64(src, DMA_SRC)?;
        self.regs.write64(dst, DMA_DST)?;
        self.regs.write64(len, DMA_CNT)?;
        self.regs.write64(cmd, DMA_CMD)
    }

    /// Waits until the device's transfer is done.
    pub(crate) fn wait(&self) -> Result {
        for _ in 0..DMA_POLLS {
            if self.regs.read64(DMA_CMD)? & CMD_RUN == 0 {
                return Ok(());
            }
            crate::shim::delay_us(1000);
        }
        Err(ETIMEDOUT)
    }
}
