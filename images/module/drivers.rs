// SPDX-License-Identifier: GPL-2.0

//! The two drivers: a platform driver for the SMMUv3 ("arm,smmu-v3") and a PCI driver for the
//! edu (1234:11e8), for the kernel's bus abstractions with lifetime-bound driver data. Each
//! probe hands its device to `hw.rs`; each unbind takes it back (detaching first).

use crate::{
    edu::{self, Edu},
    hw::{edu_bound, edu_unbound, smmu_bound, smmu_unbound},
    shim::{EduRegs, SmmuRegs},
    smmu::{layout, Smmu},
};
use kernel::{
    device::{Bound, Core, Device},
    dma::{Device as _, DmaMask},
    of, pci, platform,
    prelude::*,
    sync::Arc,
};

/// Driver data of the bound SMMU: unbinding disables it.
pub(crate) struct SmmuBinding;

impl Drop for SmmuBinding {
    fn drop(&mut self) {
        smmu_unbound();
    }
}

pub(crate) struct SmmuDriver;

crate::device_id_table!(
    of_device_table,
    SMMU_OF_TABLE,
    MODULE_SMMU_OF_TABLE,
    <SmmuDriver as platform::Driver>::IdInfo,
    [(of::DeviceId::new(c"arm,smmu-v3"), ())]
);

impl platform::Driver for SmmuDriver {
    type IdInfo = ();
    type Data<'bound> = SmmuBinding;
    const OF_ID_TABLE: Option<of::IdTable<Self::IdInfo>> = Some(&SMMU_OF_TABLE);

    fn probe<'bound>(
        pdev: &'bound platform::Device<Core<'_>>,
        _info: Option<&'bound Self::IdInfo>,
    ) -> impl PinInit<Self::Data<'bound>, Error> + 'bound {
        // SAFETY: probe runs before anything else allocates or maps DMA for this device.
        unsafe { pdev.dma_set_mask_and_coherent(DmaMask::new::<64>())? };
        let req = pdev.io_request_by_index(0).ok_or(ENODEV)?;
        let regs = SmmuRegs::new(req.iomap_sized::<{ layout::SIZE }>()?.into_devres()?);
        let dev: &Device<Bound> = pdev.as_ref();
        let smmu = Arc::pin_init(Smmu::new(regs, dev)?, GFP_KERNEL)?;
        smmu.enable()?;
        dev_info!(
            pdev,
            "SMMU enabled, stream table at {:#x}\n",
            smmu.strtab_addr()
        );
        smmu_bound(smmu);
        Ok(SmmuBinding)
    }
}

/// Driver data of a bound edu: its stream ID.
pub(crate) struct EduBinding(u32);

impl Drop for EduBinding {
    fn drop(&mut self) {
        edu_unbound(self.0);
    }
}

pub(crate) struct EduDriver;

// The edu's vendor (0x1234) has no name in `pci::Vendor`: match its class (0x00ff00, the
// "unclassified, other" class QEMU gives it) and check the ids in probe.
crate::device_id_table!(
    pci_device_table,
    EDU_PCI_TABLE,
    MODULE_EDU_PCI_TABLE,
    <EduDriver as pci::Driver>::IdInfo,
    [(pci::DeviceId::from_class(0x00_ff00, 0xff_ff00), ())]
);

impl pci::Driver for EduDriver {
    type IdInfo = ();
    type Data<'bound> = EduBinding;
    const ID_TABLE: pci::IdTable<Self::IdInfo> = &EDU_PCI_TABLE;

    #[cfg(iopt_pci_optional_id_info)]
    fn probe<'bound>(
        pdev: &'bound pci::Device<Core<'_>>,
        _info: Option<&'bound Self::IdInfo>,
    ) -> impl PinInit<Self::Data<'bound>, Error> + 'bound {
        probe_edu(pdev)
    }

    #[cfg(not(iopt_pci_optional_id_info))]
    fn probe<'bound>(
        pdev: &'bound pci::Device<Core<'_>>,
        _info: &'bound Self::IdInfo,
    ) -> impl PinInit<Self::Data<'bound>, Error> + 'bound {
        probe_edu(pdev)
    }
}

/// Binds the edu: checks its ids, maps BAR0 and hands the device to `hw.rs`.
fn probe_edu(pdev: &pci::Device<Core<'_>>) -> Result<EduBinding> {
    if pdev.vendor_id().as_raw() != edu::VENDOR || pdev.device_id() != edu::DEVICE {
        return Err(ENODEV);
    }
    pdev.enable_device_mem()?;
    pdev.set_master();
    let bar = pdev.iomap_region_sized::<{ edu::BAR_SIZE }>(0, c"iopt_hil_edu")?;
    let regs = EduRegs::new(bar.into_devres()?);
    let edu = Arc::new(Edu::new(regs, u32::from(pdev.dev_id()))?, GFP_KERNEL)?;
    let sid = edu.sid;
    edu_bound(edu)?;
    dev_info!(pdev, "edu bound, stream id {:#x}\n", sid);
    Ok(EduBinding(sid))
}

/// The drivers' registrations; dropping them unbinds both devices.
pub(crate) struct Registrations {
    _edu: Pin<KBox<kernel::driver::Registration<pci::Adapter<EduDriver>>>>,
    _smmu: Pin<KBox<kernel::driver::Registration<platform::Adapter<SmmuDriver>>>>,
}

impl Registrations {
    pub(crate) fn new(module: &'static ThisModule) -> Result<Self> {
        let smmu = KBox::pin_init(
            kernel::driver::Registration::new(c"iopt_hil_smmu", module),
            GFP_KERNEL,
        )?;
        let edu = KBox::pin_init(
            kernel::driver::Registration::new(c"iopt_hil_edu", module),
            GFP_KERNEL,
        )?;
        Ok(Registrations {
            _edu: edu,
            _smmu: smmu,
        })
    }
}
