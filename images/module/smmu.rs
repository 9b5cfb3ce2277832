// SPDX-License-Identifier: GPL-2.0

//! An Arm SMMUv3 driven by this module, as a driver that owns its IOMMU would drive it: a small
//! linear stream table, one context descriptor built from an `IoPageTable`'s TTBR, MAIR and TCR,
//! a command queue (CFGI_STE, CFGI_CD, TLBI_NH_ASID, TLBI_NH_VA, CMD_SYNC) and an event queue
//! read back for faults. Only stage 1, no interrupts (the queues are polled), no substreams.
//!
//! Every stream ID bypasses except the one attached device's (the edu), which is either
//! translated through the attached table or aborted. Before `probe` enables the SMMU it is
//! disabled, which QEMU (and the architecture, with GBPA.ABORT clear) treats as bypass, so the
//! other devices (the NIC) keep working throughout.
//!
//! The register and descriptor layout, from the Arm SMMUv3 architecture (IHI 0070), is written
//! once, in [`layout`].

use crate::shim::{DmaWords, SmmuRegs};
use kernel::{new_mutex, prelude::*, sync::Mutex};

/// Register offsets and fields, STE/CD/command/event layouts (Arm IHI 0070).
pub(crate) mod layout {
    pub(crate) const IDR0: usize = 0x00;
    pub(crate) const IDR1: usize = 0x04;
    pub(crate) const IDR5: usize = 0x14;
    pub(crate) const CR0: usize = 0x20;
    pub(crate) const CR0ACK: usize = 0x24;
    pub(crate) const CR1: usize = 0x28;
    pub(crate) const CR2: usize = 0x2c;
    pub(crate) const IRQ_CTRL: usize = 0x50;
    pub(crate) const GERROR: usize = 0x60;
    pub(crate) const STRTAB_BASE: usize = 0x80;
    pub(crate) const STRTAB_BASE_CFG: usize = 0x88;
    pub(crate) const CMDQ_BASE: usize = 0x90;
    pub(crate) const CMDQ_PROD: usize = 0x98;
    pub(crate) const CMDQ_CONS: usize = 0x9c;
    pub(crate) const EVTQ_BASE: usize = 0xa0;
    /// Page 1 (the architecture's location; page 0 aliases are optional).
    pub(crate) const EVTQ_PROD: usize = 0x1_00a8;
    pub(crate) const EVTQ_CONS: usize = 0x1_00ac;
    /// The MMIO size: two 64 KiB register pages.
    pub(crate) const SIZE: usize = 0x2_0000;

    pub(crate) const IDR0_S1P: u32 = 1 << 1;
    pub(crate) const IDR0_TTF_AARCH64: u32 = 1 << 3;
    pub(crate) const IDR0_COHACC: u32 = 1 << 4;
    pub(crate) const IDR1_SIDSIZE: u32 = 0x3f;
    pub(crate) const IDR5_GRAN4K: u32 = 1 << 4;
    pub(crate) const IDR5_GRAN16K: u32 = 1 << 5;
    pub(crate) const IDR5_GRAN64K: u32 = 1 << 6;
    pub(crate) const IDR5_OAS: u32 = 0x7;

    pub(crate) const CR0_SMMUEN: u32 = 1 << 0;
    pub(crate) const CR0_EVTQEN: u32 = 1 << 2;
    pub(crate) const CR0_CMDQEN: u32 = 1 << 3;
    /// CR1: tables and queues inner shareable (3), outer and inner write-back (1).
    pub(crate) const CR1_WB_ISH: u32 = (3 << 10) | (1 << 8) | (1 << 6) | (3 << 4) | (1 << 2) | 1;
    /// CR2: record invalid stream IDs, private TLB maintenance.
    pub(crate) const CR2_RECINVSID_PTM: u32 = (1 << 1) | (1 << 2);
    pub(crate) const GERROR_CMDQ_ERR: u32 = 1 << 0;
    pub(crate) const CMDQ_CONS_ERR: u32 = 0x7f << 24;

    /// Base registers: read/write-allocate hint (bit 62) and the address field, bits 51:5.
    pub(crate) const BASE_ALLOC: u64 = 1 << 62;
    pub(crate) const BASE_ADDR: u64 = ((1 << 52) - 1) & !0x1f;
    pub(crate) const STRTAB_ADDR: u64 = ((1 << 52) - 1) & !0x3f;
    /// Queue pointers carry an overflow flag in bit 31.
    pub(crate) const Q_OVF: u32 = 1 << 31;

    /// Stream table entry: 8 doublewords.
    pub(crate) const STE_DWORDS: usize = 8;
    pub(crate) const STE_V: u64 = 1 << 0;
    pub(crate) const STE_CFG_ABORT: u64 = 0b000 << 1;
    pub(crate) const STE_CFG_BYPASS: u64 = 0b100 << 1;
    pub(crate) const STE_CFG_S1: u64 = 0b101 << 1;
    /// S1ContextPtr, bits 51:6 of doubleword 0.
    pub(crate) const STE_S1CTXPTR: u64 = ((1 << 52) - 1) & !0x3f;
    /// Doubleword 1: CD fetches write-back read-allocate, inner shareable; NS-EL1 stream world.
    pub(crate) const STE1_S1_WB_ISH: u64 = (1 << 2) | (1 << 4) | (3 << 6);
    /// Doubleword 1 of a bypass STE: shareability as the device's (SHCFG = incoming).
    pub(crate) const STE1_SHCFG_INCOMING: u64 = 1 << 44;

    /// Context descriptor: 8 doublewords.
    pub(crate) const CD_DWORDS: usize = 8;
    pub(crate) const CD_EPD1: u64 = 1 << 30;
    pub(crate) const CD_V: u64 = 1 << 31;
    pub(crate) const CD_AA64: u64 = 1 << 41;
    pub(crate) const CD_R: u64 = 1 << 45;
    pub(crate) const CD_A: u64 = 1 << 46;
    pub(crate) const CD_ASET: u64 = 1 << 47;
    /// TTB0, bits 51:4 of doubleword 1.
    pub(crate) const CD_TTB: u64 = ((1 << 52) - 1) & !0xf;

    /// Commands: 2 doublewords, opcode in bits 7:0.
    pub(crate) const CMD_DWORDS: usize = 2;
    pub(crate) const CMD_CFGI_STE: u64 = 0x03;
    pub(crate) const CMD_CFGI_ALL: u64 = 0x04;
    pub(crate) const CMD_CFGI_CD: u64 = 0x05;
    pub(crate) const CMD_TLBI_NH_ASID: u64 = 0x11;
    pub(crate) const CMD_TLBI_NH_VA: u64 = 0x12;
    pub(crate) const CMD_TLBI_NSNH_ALL: u64 = 0x30;
    pub(crate) const CMD_SYNC: u64 = 0x46;
    pub(crate) const CMD_LEAF: u64 = 1;

    /// Events: 4 doublewords; id in bits 7:0, StreamID in 63:32 of doubleword 0, RnW bit 35 of
    /// doubleword 1, the input address in doubleword 2.
    pub(crate) const EVT_DWORDS: usize = 4;
    pub(crate) const EVT_RNW: u64 = 1 << 35;

    /// The event names of the architecture (the ones this SMMU model can raise and more).
    pub(crate) fn event_name(id: u8) -> &'static str {
        match id {
            0x01 => "F_UUT",
            0x02 => "C_BAD_STREAMID",
            0x03 => "F_STE_FETCH",
            0x04 => "C_BAD_STE",
            0x05 => "F_BAD_ATS_TREQ",
            0x06 => "F_STREAM_DISABLED",
            0x07 => "F_TRANSL_FORBIDDEN",
            0x08 => "C_BAD_SUBSTREAMID",
            0x09 => "F_CD_FETCH",
            0x0a => "C_BAD_CD",
            0x0b => "F_WALK_EABT",
            0x10 => "F_TRANSLATION",
            0x11 => "F_ADDR_SIZE",
            0x12 => "F_ACCESS",
            0x13 => "F_PERMISSION",
            0x20 => "F_TLB_CONFLICT",
            0x21 => "F_CFG_CONFLICT",
            0x24 => "E_PAGE_REQUEST",
            0x25 => "F_VMS_FETCH",
            _ => "EVENT_UNKNOWN",
        }
    }
}

use layout::*;

/// Stream IDs this stream table covers: bus 0 (`2^STRTAB_LOG2`); QEMU's virt puts every PCI
/// device on it.
const STRTAB_LOG2: u32 = 8;
const CMDQ_LOG2: u32 = 8;
const EVTQ_LOG2: u32 = 7;
/// How long a command or register acknowledgement may take (polled).
const POLL_US: u64 = 1_000_000;

/// One SMMU event, decoded.
#[derive(Clone, Copy)]
pub(crate) struct Event {
    pub(crate) id: u8,
    pub(crate) sid: u32,
    pub(crate) iova: u64,
    pub(crate) read: bool,
}

impl Event {
    fn decode(dw: [u64; EVT_DWORDS]) -> Self {
        Event {
            id: (dw[0] & 0xff) as u8,
            sid: (dw[0] >> 32) as u32,
            iova: dw[2],
            read: dw[1] & EVT_RNW != 0,
        }
    }

    pub(crate) fn name(&self) -> &'static str {
        event_name(self.id)
    }
}

/// What a context descriptor is built from: the table's TTBR, MAIR and the TCR fields
/// io-pgtable computed (all in TCR encodings), and an ASID.
#[derive(Clone, Copy)]
pub(crate) struct Context {
    pub(crate) ttbr: u64,
    pub(crate) mair: u64,
    pub(crate) tsz: u64,
    pub(crate) tg: u64,
    pub(crate) irgn: u64,
    pub(crate) orgn: u64,
    pub(crate) sh: u64,
    pub(crate) ips: u64,
    pub(crate) asid: u16,
}

impl Context {
    /// The CD's doublewords (TTB1 disabled; faults recorded and terminated; no hardware
    /// access-flag or dirty updates, so an access flag of 0 faults).
    fn cd(&self) -> [u64; CD_DWORDS] {
        let mut cd = [0u64; CD_DWORDS];
        cd[0] = (self.tsz & 0x3f)
            | (self.tg & 3) << 6
            | (self.irgn & 3) << 8
            | (self.orgn & 3) << 10
            | (self.sh & 3) << 12
            | CD_EPD1
            | CD_V
            | (self.ips & 7) << 32
            | CD_AA64
            | CD_R
            | CD_A
            | CD_ASET
            | u64::from(self.asid) << 48;
        cd[1] = self.ttbr & CD_TTB;
        cd[3] = self.mair;
        cd
    }
}

/// The queues' software state.
struct Queues {
    /// The next command slot (index with wrap bit).
    cmd_prod: u32,
    /// The next event slot to read (index with wrap bit).
    evt_cons: u32,
}

/// A probed SMMU with its tables and queues.
#[pin_data]
pub(crate) struct Smmu {
    regs: SmmuRegs,
    strtab: DmaWords,
    cd: DmaWords,
    cmdq: DmaWords,
    evtq: DmaWords,
    #[pin]
    queues: Mutex<Queues>,
    pub(crate) idr0: u32,
    pub(crate) idr1: u32,
    pub(crate) idr5: u32,
}

fn ste_bypass() -> [u64; STE_DWORDS] {
    let mut ste = [0u64; STE_DWORDS];
    ste[0] = STE_V | STE_CFG_BYPASS;
    ste[1] = STE1_SHCFG_INCOMING;
    ste
}

fn ste_abort() -> [u64; STE_DWORDS] {
    let mut ste = [0u64; STE_DWORDS];
    ste[0] = STE_V | STE_CFG_ABORT;
    ste
}

impl Smmu {
    /// Allocates the tables and queues for `dev` and brings the SMMU up: every stream bypasses.
    pub(crate) fn new(
        regs: SmmuRegs,
        dev: &kernel::device::Device<kernel::device::Bound>,
    ) -> Result<impl PinInit<Self, Error>> {
        let idr0 = regs.read32(IDR0)?;
        let idr1 = regs.read32(IDR1)?;
        let idr5 = regs.read32(IDR5)?;
        if idr0 & IDR0_S1P == 0 || idr0 & IDR0_TTF_AARCH64 == 0 || idr0 & IDR0_COHACC == 0 {
            pr_err!("SMMU lacks stage 1, AArch64 tables or coherent access (IDR0 {:#x})\n", idr0);
            return Err(ENODEV);
        }
        if idr1 & IDR1_SIDSIZE < STRTAB_LOG2 {
            return Err(ENODEV);
        }
        let strtab = DmaWords::alloc(dev, (1usize << STRTAB_LOG2) * STE_DWORDS)?;
        let cd = DmaWords::alloc(dev, CD_DWORDS)?;
        let cmdq = DmaWords::alloc(dev, (1usize << CMDQ_LOG2) * CMD_DWORDS)?;
        let evtq = DmaWords::alloc(dev, (1usize << EVTQ_LOG2) * EVT_DWORDS)?;
        for sid in 0..(1usize << STRTAB_LOG2) {
            for (i, w) in ste_bypass().iter().enumerate() {
                strtab.set(sid * STE_DWORDS + i, *w)?;
            }
        }
        Ok(try_pin_init!(Smmu {
            regs,
            strtab,
            cd,
            cmdq,
            evtq,
            queues <- new_mutex!(Queues { cmd_prod: 0, evt_cons: 0 }),
            idr0,
            idr1,
            idr5,
        }))
    }

    /// The stream table's bus address (the host checks it against STRTAB_BASE).
    pub(crate) fn strtab_addr(&self) -> u64 {
        self.strtab.addr()
    }

    pub(crate) fn cd_addr(&self) -> u64 {
        self.cd.addr()
    }

    fn write_cr0(&self, val: u32) -> Result {
        self.regs.write32(val, CR0)?;
        self.poll(|s| Ok(s.regs.read32(CR0ACK)? == val))
    }

    fn poll(&self, mut done: impl FnMut(&Self) -> Result<bool>) -> Result {
        for _ in 0..POLL_US / 10 {
            if done(self)? {
                return Ok(());
            }
            crate::shim::delay_us(10);
        }
        Err(ETIMEDOUT)
    }

    /// Programs and enables the SMMU (it was reset or left disabled).
    pub(crate) fn enable(&self) -> Result {
        self.write_cr0(0)?;
        self.regs.write32(0, IRQ_CTRL)?;
        self.regs.write32(CR1_WB_ISH, CR1)?;
        self.regs.write32(CR2_RECINVSID_PTM, CR2)?;
        self.regs
            .write64(BASE_ALLOC | (self.strtab.addr() & STRTAB_ADDR), STRTAB_BASE)?;
        // FMT 0 (linear), LOG2SIZE.
        self.regs.write32(STRTAB_LOG2, STRTAB_BASE_CFG)?;
        self.regs.write64(
            BASE_ALLOC | (self.cmdq.addr() & BASE_ADDR) | u64::from(CMDQ_LOG2),
            CMDQ_BASE,
        )?;
        self.regs.write32(0, CMDQ_PROD)?;
        self.regs.write32(0, CMDQ_CONS)?;
        self.regs.write64(
            BASE_ALLOC | (self.evtq.addr() & BASE_ADDR) | u64::from(EVTQ_LOG2),
            EVTQ_BASE,
        )?;
        self.regs.write32(0, EVTQ_PROD)?;
        self.regs.write32(0, EVTQ_CONS)?;
        {
            let mut q = self.queues.lock();
            q.cmd_prod = 0;
            q.evt_cons = 0;
        }
        self.write_cr0(CR0_CMDQEN)?;
        self.commands(&[[CMD_CFGI_ALL, 31], [CMD_TLBI_NSNH_ALL, 0]])?;
        self.write_cr0(CR0_CMDQEN | CR0_EVTQEN)?;
        self.write_cr0(CR0_CMDQEN | CR0_EVTQEN | CR0_SMMUEN)
    }

    /// Disables translation (every stream bypasses again).
    pub(crate) fn disable(&self) -> Result {
        self.write_cr0(0)
    }

    /// Issues `cmds` and a CMD_SYNC, and waits until the SMMU has consumed them all.
    fn commands(&self, cmds: &[[u64; CMD_DWORDS]]) -> Result {
        let mut q = self.queues.lock();
        let size = 1u32 << CMDQ_LOG2;
        let mask = (size << 1) - 1;
        for cmd in Iterator::chain(cmds.iter(), core::iter::once(&[CMD_SYNC, 0])) {
            let slot = (q.cmd_prod & (size - 1)) as usize;
            for (i, w) in cmd.iter().enumerate() {
                self.cmdq.set(slot * CMD_DWORDS + i, *w)?;
            }
            q.cmd_prod = (q.cmd_prod + 1) & mask;
        }
        // The queue entries are coherent memory: the register write (writel, with its barrier)
        // orders them before the SMMU sees the new producer index.
        self.regs.write32(q.cmd_prod, CMDQ_PROD)?;
        let prod = q.cmd_prod;
        self.poll(|s| {
            if s.regs.read32(GERROR)? & GERROR_CMDQ_ERR != 0 {
                return Err(EIO);
            }
            let cons = s.regs.read32(CMDQ_CONS)?;
            if cons & CMDQ_CONS_ERR != 0 {
                return Err(EIO);
            }
            Ok(cons & mask == prod)
        })
    }

    fn write_ste(&self, sid: u32, ste: [u64; STE_DWORDS]) -> Result {
        let base = sid as usize * STE_DWORDS;
        if sid >> STRTAB_LOG2 != 0 {
            return Err(EINVAL);
        }
        // Doubleword 0 (valid, config) last, so the SMMU never sees a half-written entry.
        for i in (0..STE_DWORDS).rev() {
            self.strtab.set(base + i, ste[i])?;
        }
        self.commands(&[[CMD_CFGI_STE | u64::from(sid) << 32, CMD_LEAF]])
    }

    /// Points the STEs of `sids` at one CD built from `ctx` (stage-1 translation).
    pub(crate) fn attach(&self, sids: &[u32], ctx: &Context) -> Result {
        // Abort first: the CD is rewritten while nothing may use it.
        for sid in sids {
            self.write_ste(*sid, ste_abort())?;
        }
        let cd = ctx.cd();
        for i in (0..CD_DWORDS).rev() {
            self.cd.set(i, cd[i])?;
        }
        for sid in sids {
            self.commands(&[[CMD_CFGI_CD | u64::from(*sid) << 32, CMD_LEAF]])?;
        }
        let mut ste = [0u64; STE_DWORDS];
        ste[0] = STE_V | STE_CFG_S1 | (self.cd.addr() & STE_S1CTXPTR);
        ste[1] = STE1_S1_WB_ISH;
        for sid in sids {
            self.write_ste(*sid, ste)?;
        }
        Ok(())
    }

    /// `sids` abort every transaction (no event is recorded for an aborting STE).
    pub(crate) fn detach(&self, sids: &[u32], asid: Option<u16>) -> Result {
        for sid in sids {
            self.write_ste(*sid, ste_abort())?;
        }
        match asid {
            Some(asid) => self.tlbi_asid(asid),
            None => Ok(()),
        }
    }

    pub(crate) fn tlbi_asid(&self, asid: u16) -> Result {
        self.commands(&[[CMD_TLBI_NH_ASID | u64::from(asid) << 48, 0]])
    }

    /// Invalidates the translations of `[iova, iova + len)`, one page of `granule` at a time.
    pub(crate) fn tlbi_range(&self, asid: u16, iova: u64, len: u64, granule: u64) -> Result {
        let mut cmds = KVec::new();
        let mut at = iova & !(granule - 1);
        let end = iova.checked_add(len).ok_or(EINVAL)?;
        while at < end {
            let cmd = [
                CMD_TLBI_NH_VA | u64::from(asid) << 48,
                at & !0xfff,
            ];
            cmds.push(cmd, GFP_KERNEL)?;
            if cmds.len() >= (1usize << CMDQ_LOG2) - 1 {
                return Err(E2BIG);
            }
            at += granule;
        }
        self.commands(&cmds)
    }

    /// Reads every event the SMMU recorded since the last call, oldest first.
    pub(crate) fn events(&self, out: &mut KVec<Event>) -> Result<bool> {
        let mut q = self.queues.lock();
        let size = 1u32 << EVTQ_LOG2;
        let mask = (size << 1) - 1;
        let prod_reg = self.regs.read32(EVTQ_PROD)?;
        let prod = prod_reg & mask;
        let overflow = (prod_reg ^ q.evt_cons) & Q_OVF != 0;
        while q.evt_cons & mask != prod {
            let slot = (q.evt_cons & (size - 1)) as usize;
            let mut dw = [0u64; EVT_DWORDS];
            for (i, w) in dw.iter_mut().enumerate() {
                *w = self.evtq.get(slot * EVT_DWORDS + i)?;
            }
            out.push(Event::decode(dw), GFP_KERNEL)?;
            q.evt_cons = (q.evt_cons & Q_OVF) | (((q.evt_cons & mask) + 1) & mask);
        }
        // Acknowledge an overflow by copying the flag.
        q.evt_cons = (q.evt_cons & !Q_OVF) | (prod_reg & Q_OVF);
        self.regs.write32(q.evt_cons, EVTQ_CONS)?;
        Ok(overflow)
    }

    /// The granules the SMMU accepts in a CD, as a bitmap of page sizes.
    pub(crate) fn granules(&self) -> u64 {
        let mut g = 0u64;
        if self.idr5 & IDR5_GRAN4K != 0 {
            g |= 1 << 12;
        }
        if self.idr5 & IDR5_GRAN16K != 0 {
            g |= 1 << 14;
        }
        if self.idr5 & IDR5_GRAN64K != 0 {
            g |= 1 << 16;
        }
        g
    }

    /// The output address size the SMMU implements, in bits (IDR5.OAS).
    pub(crate) fn oas_bits(&self) -> u32 {
        match self.idr5 & IDR5_OAS {
            0 => 32,
            1 => 36,
            2 => 40,
            3 => 42,
            4 => 44,
            5 => 48,
            _ => 52,
        }
    }
}
