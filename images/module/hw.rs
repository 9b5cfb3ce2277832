// SPDX-License-Identifier: GPL-2.0

//! The bound devices (the SMMU and the edus, each from its own driver's probe) and the device
//! requests: `smmu`, `attach`, `detach`, `dma`, `probe`, `tlbi`, `events`.
//!
//! Every bound edu's stream is attached to the same table (one CD, one ASID). `dma` uses the
//! first edu; `probe` spreads its reads over all of them at once (a transfer takes ~100 ms of
//! the edu's timer, so N devices read N iovas in the time of one), telling their events apart
//! by StreamID.
//!
//! The drivers' probes put their device here; every device request takes this one lock for its
//! whole run, so requests are serialised and a device never goes away under one. An attached
//! table is held (an `Arc`) until it is detached, so `destroy` of an attached table only drops
//! it from the registry: its memory stays until no STE points at it and the TLB is clean.
//!
//! Every SMMU event read back is logged. One that a `dma` request did not `expect` is logged as
//! `iopt_hil: smmu event <NAME> ...`, which the harness's kernel-health check treats as a splat.

use crate::{
    edu::Edu,
    registry::Table,
    request::DeviceRequest,
    smmu::{Context, Event, Smmu},
    Out, State,
};
use core::fmt::{Result as FmtResult, Write};
use kernel::{prelude::*, sync::Arc};

/// At most this many edus are driven (and probed with at once).
const MAX_EDUS: usize = 8;
/// Iovas one `probe` reads at most.
pub(crate) const MAX_PROBES: usize = 8;
/// Bytes one probe reads (two of QEMU's 4-byte accesses).
const PROBE_LEN: u64 = 8;

/// The table the edus' STEs point at.
struct Attached {
    id: u32,
    /// Held, never read: the SMMU walks this table until `detach` has aborted the STE.
    _table: Arc<Table>,
    asid: u16,
    granule: u64,
}

/// What the drivers have bound, and what is attached.
pub(crate) struct Devices {
    smmu: Option<Arc<Smmu>>,
    /// In the order they bound; the first one does `dma`.
    edus: KVec<Arc<Edu>>,
    attached: Option<Attached>,
}

impl Devices {
    const EMPTY: Self = Devices {
        smmu: None,
        edus: KVec::new(),
        attached: None,
    };

    /// The edus' stream IDs (at most `MAX_EDUS`).
    fn sids(&self) -> ([u32; MAX_EDUS], usize) {
        let mut sids = [0u32; MAX_EDUS];
        for (slot, edu) in sids.iter_mut().zip(self.edus.iter()) {
            *slot = edu.sid;
        }
        (sids, self.edus.len().min(MAX_EDUS))
    }

    /// Points the edus' STEs away from the attached table (abort), invalidates its ASID, and
    /// only then lets the table go.
    fn detach(&mut self) -> Result {
        let Some(att) = self.attached.take() else {
            return Ok(());
        };
        let (sids, n) = self.sids();
        let res = match &self.smmu {
            Some(smmu) => smmu.detach(&sids[..n], Some(att.asid)),
            None => Ok(()),
        };
        if res.is_err() {
            // The SMMU may still walk the table: keep it rather than free memory in use.
            self.attached = Some(att);
        }
        res
    }
}

kernel::sync::global_lock! {
    // SAFETY: `init` is called in the module's init before either driver is registered, and
    // nothing else uses this lock before.
    pub(crate) unsafe(uninit) static DEVICES: Mutex<Devices> = Devices::EMPTY;
}

/// Called once from the module's init, before the drivers are registered.
pub(crate) fn init() {
    // SAFETY: called exactly once (module init), before any other use of `DEVICES`.
    unsafe { DEVICES.init() };
}

/// A probed SMMU: enabled, every stream bypassing.
pub(crate) fn smmu_bound(smmu: Arc<Smmu>) {
    DEVICES.lock().smmu = Some(smmu);
}

/// The SMMU's driver unbinds: detach, disable (every stream bypasses, as before probe).
pub(crate) fn smmu_unbound() {
    let mut d = DEVICES.lock();
    if d.detach().is_err() {
        pr_err!("cannot detach the edu's table from the SMMU\n");
    }
    if let Some(smmu) = d.smmu.take() {
        if smmu.disable().is_err() {
            pr_err!("cannot disable the SMMU\n");
        }
    }
    // Only with translation off is it safe to free an attached table (if detach failed).
    d.attached = None;
}

/// A probed edu; `ENOSPC` beyond `MAX_EDUS` (that one is not driven). An attached table is
/// detached first: every edu's stream points at it or none does.
pub(crate) fn edu_bound(edu: Arc<Edu>) -> Result {
    let mut d = DEVICES.lock();
    if d.edus.len() >= MAX_EDUS {
        return Err(ENOSPC);
    }
    d.detach()?;
    d.edus.push(edu, GFP_KERNEL)?;
    Ok(())
}

pub(crate) fn edu_unbound(sid: u32) {
    let mut d = DEVICES.lock();
    if d.detach().is_err() {
        pr_err!("cannot detach the edus' table from the SMMU\n");
    }
    d.edus.retain(|e| e.sid != sid);
}

fn refuse(out: &mut Out, err: Error, why: &str) -> FmtResult {
    writeln!(out, "ret={} src=check why=\"{}\"", err.to_errno(), why)
}

fn failed(out: &mut Out, err: Error, what: &str) -> FmtResult {
    writeln!(out, "ret={} src=device why=\"{}\"", err.to_errno(), what)
}

/// Reads the events, logs them and returns them. Events of the kind the request `expect`s are
/// logged as expected (info); any other one as `smmu event <NAME> ...` (a warning, which the
/// harness counts as a splat). One line per kind, with how many more of it came: a faulting
/// transfer raises an event per access (QEMU: per 4 bytes).
fn drain(smmu: &Smmu, expect: Option<u8>) -> Result<(KVec<Event>, bool)> {
    let mut events = KVec::new();
    let overflow = smmu.events(&mut events)?;
    for (i, e) in events.iter().enumerate() {
        if events[..i].iter().any(|p| p.id == e.id) {
            continue;
        }
        let more = events[i + 1..].iter().filter(|n| n.id == e.id).count();
        let rw = if e.read { "read" } else { "write" };
        if expect == Some(e.id) {
            pr_info!(
                "expected smmu event {} (0x{:02x}) sid={:#x} iova={:#x} {} (+{} more)\n",
                e.name(), e.id, e.sid, e.iova, rw, more
            );
        } else {
            pr_warn!(
                "smmu event {} (0x{:02x}) sid={:#x} iova={:#x} {} (+{} more)\n",
                e.name(), e.id, e.sid, e.iova, rw, more
            );
        }
    }
    if overflow {
        pr_warn!("smmu event queue overflowed\n");
    }
    Ok((events, overflow))
}

/// Runs one device request and writes its reply.
pub(crate) fn execute(state: &State, request: &DeviceRequest, out: &mut Out) -> FmtResult {
    let mut d = DEVICES.lock();
    let (Some(smmu), Some(edu)) = (d.smmu.clone(), d.edus.first().cloned()) else {
        return refuse(out, ENODEV, "no SMMU or no edu bound");
    };
    match *request {
        DeviceRequest::Smmu => writeln!(
            out,
            "ret=0 strtab={:#x} cd={:#x} sid={:#x} idr0={:#x} idr1={:#x} idr5={:#x} \
             granules={:#x} oas={} edus={} attached={}",
            smmu.strtab_addr(),
            smmu.cd_addr(),
            edu.sid,
            smmu.idr0,
            smmu.idr1,
            smmu.idr5,
            smmu.granules(),
            smmu.oas_bits(),
            d.edus.len(),
            d.attached.as_ref().map_or(0, |a| a.id)
        ),
        DeviceRequest::Attach { id } => {
            let (table, ias, pgsizes) = match state.tables.lock().get(id) {
                Some(e) => (e.table.clone(), e.geometry.ias, e.geometry.pgsizes),
                None => return refuse(out, ENOENT, "no such table"),
            };
            let granule = 1u64 << pgsizes.trailing_zeros();
            if smmu.granules() & granule == 0 {
                return refuse(out, shim_eopnotsupp(), "the SMMU does not offer this granule");
            }
            // CD.T0SZ is at most 39 without small translation tables (SMMU_IDR3.STT).
            if !(25..=48).contains(&ias) {
                return refuse(out, EINVAL, "ias outside 25..=48 (CD.T0SZ 16..=39)");
            }
            let ctx = context(&table, id as u16);
            // The architecture reads a CD.IPS above the SMMU's output size as that size, but
            // QEMU 10.0's SMMUv3 aborts the whole machine on a 52-bit IPS it does not
            // implement (`oas2bits`: "code should not be reached"): such a table is refused.
            if ctx.ips >= IPS_52_BIT && smmu.oas_bits() < 52 {
                return refuse(out, ERANGE, "52-bit IPS on an SMMU without 52-bit output");
            }
            if let Err(e) = d.detach() {
                return failed(out, e, "detach of the previous table");
            }
            let (sids, n) = d.sids();
            if let Err(e) = smmu.attach(&sids[..n], &ctx) {
                // An STE may point at the CD of a table we are not holding: abort them all.
                let _ = smmu.detach(&sids[..n], Some(ctx.asid));
                return failed(out, e, "attach");
            }
            d.attached = Some(Attached {
                id: id as u32,
                _table: table,
                asid: ctx.asid,
                granule,
            });
            writeln!(
                out,
                "ret=0 sid={:#x} asid={:#x} cd={:#x} ttbr={:#x}",
                edu.sid,
                ctx.asid,
                smmu.cd_addr(),
                ctx.ttbr
            )
        }
        DeviceRequest::Detach => match d.detach() {
            Ok(()) => writeln!(out, "ret=0"),
            Err(e) => failed(out, e, "detach"),
        },
        DeviceRequest::Dma {
            id,
            iova,
            len,
            off,
            to_device,
            expect,
        } => {
            if d.attached.as_ref().map(|a| u64::from(a.id)) != Some(id) {
                return refuse(out, ENODEV, "table not attached");
            }
            if len == 0 || len > crate::edu::BUF_SIZE || off > crate::edu::BUF_SIZE - len {
                return refuse(out, EINVAL, "len and off must stay inside the device's 4 KiB buffer");
            }
            // Events from before this transfer are not its own: report them as they are.
            if drain(&smmu, None).is_err() {
                return failed(out, EIO, "event queue");
            }
            let ns = match edu.transfer(iova, off, len, to_device) {
                Ok(ns) => ns,
                Err(e) => return failed(out, e, "transfer"),
            };
            let (events, overflow) = match drain(&smmu, expect) {
                Ok(r) => r,
                Err(e) => return failed(out, e, "event queue"),
            };
            match events.first() {
                None if !overflow => writeln!(out, "ret=0 src=device moved={:#x} ns={}", len, ns),
                None => writeln!(out, "ret=-5 src=device why=\"event queue overflow\" ns={}", ns),
                Some(e) => writeln!(
                    out,
                    "ret=-14 src=device event={} iova={:#x} sid={:#x} read={} events={} ns={}",
                    e.name(),
                    e.iova,
                    e.sid,
                    u8::from(e.read),
                    events.len(),
                    ns
                ),
            }
        }
        DeviceRequest::Probe { id, iovas, count } => {
            if d.attached.as_ref().map(|a| u64::from(a.id)) != Some(id) {
                return refuse(out, ENODEV, "table not attached");
            }
            let edus = &d.edus;
            probe(&smmu, edus, &iovas[..count.min(MAX_PROBES)], out)
        }
        DeviceRequest::Tlbi { iova, len } => {
            let Some(att) = d.attached.as_ref() else {
                return refuse(out, ENODEV, "nothing attached");
            };
            let res = match iova {
                None => smmu.tlbi_asid(att.asid),
                Some(iova) => smmu.tlbi_range(att.asid, iova, len.max(1), att.granule),
            };
            match res {
                Ok(()) => writeln!(out, "ret=0"),
                Err(e) => failed(out, e, "tlbi"),
            }
        }
        DeviceRequest::Events => {
            let (events, overflow) = match drain(&smmu, None) {
                Ok(r) => r,
                Err(e) => return failed(out, e, "event queue"),
            };
            write!(out, "ret=0 count={} overflow={} events=", events.len(), u8::from(overflow))?;
            for (i, e) in events.iter().take(16).enumerate() {
                let sep = if i == 0 { "" } else { "," };
                write!(out, "{}{}@{:#x}", sep, e.name(), e.iova)?;
            }
            writeln!(out)
        }
    }
}

/// Each iova read by one edu (all edus at once, round by round); the reply lists, per iova in
/// order, `ok` or the first event of the edu that read it (`F_...@iova`). The request asks for
/// the device's view, faults included: its events are logged as expected, and the caller judges
/// each one.
fn probe(smmu: &Smmu, edus: &[Arc<Edu>], iovas: &[u64], out: &mut Out) -> FmtResult {
    if drain(smmu, None).is_err() {
        return failed(out, EIO, "event queue");
    }
    let mut seen: [Option<Event>; MAX_PROBES] = [None; MAX_PROBES];
    for (round, chunk) in iovas.chunks(edus.len()).enumerate() {
        let busy = &edus[..chunk.len()];
        for (edu, iova) in busy.iter().zip(chunk) {
            if let Err(e) = edu.start(*iova, 0, PROBE_LEN, true) {
                return failed(out, e, "probe transfer");
            }
        }
        for edu in busy {
            if let Err(e) = edu.wait() {
                return failed(out, e, "probe transfer");
            }
        }
        let events = match smmu_events(smmu) {
            Ok(ev) => ev,
            Err(e) => return failed(out, e, "event queue"),
        };
        for (i, edu) in busy.iter().enumerate() {
            seen[round * edus.len() + i] = events.iter().find(|e| e.sid == edu.sid).copied();
        }
    }
    write!(out, "ret=0 src=device seen=")?;
    for (i, s) in seen[..iovas.len()].iter().enumerate() {
        let sep = if i == 0 { "" } else { "," };
        match s {
            None => write!(out, "{}ok", sep)?,
            Some(e) => write!(out, "{}{}@{:#x}", sep, e.name(), e.iova)?,
        }
    }
    writeln!(out)
}

/// The events of a probe round: logged as asked for (info), each kind once per device.
fn smmu_events(smmu: &Smmu) -> Result<KVec<Event>> {
    let mut events = KVec::new();
    if smmu.events(&mut events)? {
        pr_warn!("smmu event queue overflowed\n");
    }
    for (i, e) in events.iter().enumerate() {
        if !events[..i].iter().any(|p| p.sid == e.sid && p.id == e.id) {
            pr_info!("probed: smmu event {} sid={:#x} iova={:#x}\n", e.name(), e.sid, e.iova);
        }
    }
    Ok(events)
}

/// TCR/CD.IPS encoding of a 52-bit output size.
const IPS_52_BIT: u64 = 6;

fn shim_eopnotsupp() -> Error {
    crate::shim::eopnotsupp()
}

/// The CD's inputs, from what io-pgtable computed for the table (`ttbr()`, `mair()` and the TCR
/// in `raw_cfg()`), as a driver that hands the table to its own MMU does.
fn context(table: &Table, asid: u16) -> Context {
    // SAFETY: the caller keeps the table (an `Arc`) in `Devices::attached` for as long as the
    // STE points at it, and `Devices::detach` aborts the STE and invalidates the ASID before
    // dropping it, so the device stops using the table before it can be dropped.
    let ttbr = unsafe { table.pgt.ttbr() };
    // SAFETY: `raw_cfg` points into the table, which `table` keeps alive; the table's format is
    // ARM64LPAES1, so `arm_lpae_s1_cfg` is the member of the union io-pgtable wrote, once, when
    // the table was created.
    let tcr = unsafe { (*table.pgt.raw_cfg()).__bindgen_anon_1.arm_lpae_s1_cfg.tcr };
    Context {
        ttbr,
        mair: table.pgt.mair(),
        tsz: u64::from(tcr.tsz()),
        tg: u64::from(tcr.tg()),
        irgn: u64::from(tcr.irgn()),
        orgn: u64::from(tcr.orgn()),
        sh: u64::from(tcr.sh()),
        ips: u64::from(tcr.ips()),
        asid,
    }
}
