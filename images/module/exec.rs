// SPDX-License-Identifier: GPL-2.0

//! Runs the table requests: the only place that calls into io-pgtable.
//!
//! `src=check` replies mean this module refused a request before calling io-pgtable, because it
//! would break the Rust contract of `map_pages`/`unmap_pages` (or reach a C error path that
//! WARNs). The `_unchecked` requests skip those checks on purpose, so that tests can provoke
//! the C error paths; they still keep the record up to date.

use crate::{
    record::{believable, span, Geometry, Run},
    registry::{Registry, Table},
    request::{MapRequest, Request, UnmapRequest, PROTOCOL},
    Out, State,
};
use core::fmt::{Result as FmtResult, Write};
use kernel::{
    device::{Bound, Device},
    iommu::pgtable::{prot, Config},
    prelude::*,
    sync::{Arc, Mutex},
};

// The quirk bits of `include/linux/io-pgtable.h` (`BIT(n)` macros, which bindgen cannot name).
const QUIRK_ARM_NS: usize = 1 << 0;
const QUIRK_NO_PERMS: usize = 1 << 1;
const QUIRK_ARM_MTK_EXT: usize = 1 << 3;
const QUIRK_ARM_MTK_TTBR_EXT: usize = 1 << 4;
const QUIRK_ARM_TTBR1: usize = 1 << 5;
const QUIRK_ARM_OUTER_WBWA: usize = 1 << 6;
const QUIRK_ARM_HD: usize = 1 << 7;
const QUIRK_ARM_S2FWB: usize = 1 << 8;
const QUIRK_NO_WARN: usize = 1 << 9;
/// Passed on to io-pgtable: the stage-1 quirks this module's checks model.
const QUIRKS_PASSED: usize = QUIRK_ARM_NS | QUIRK_ARM_HD | QUIRK_ARM_OUTER_WBWA | QUIRK_NO_WARN;
/// Passed on too, so that io-pgtable's own refusal is seen: quirks of other formats.
const QUIRKS_OF_OTHER_FORMATS: usize =
    QUIRK_NO_PERMS | QUIRK_ARM_MTK_EXT | QUIRK_ARM_MTK_TTBR_EXT | QUIRK_ARM_S2FWB;

/// Runs one request and writes its reply.
pub(crate) fn execute(state: &State, request: &Request, out: &mut Out) -> FmtResult {
    let tables = &state.tables;
    match request {
        Request::Version => writeln!(out, "ret=0 protocol={}", PROTOCOL),
        Request::Create {
            ias,
            oas,
            pgsizes,
            quirks,
            coherent_walk,
        } => {
            let cfg = Config {
                quirks: *quirks as usize,
                pgsize_bitmap: *pgsizes as usize,
                ias: (*ias).min(64) as u32,
                oas: (*oas).min(64) as u32,
                coherent_walk: *coherent_walk,
            };
            create(state.dev, tables, cfg, out)
        }
        Request::Destroy { id } => {
            let entry = match tables.lock().remove(*id) {
                Ok(entry) => entry,
                Err((err, why)) => return refuse(out, err, why),
            };
            // The table is freed outside the lock.
            drop(entry);
            writeln!(out, "ret=0")
        }
        Request::List => {
            let reg = tables.lock();
            write!(out, "ret=0 ids=")?;
            for (i, id) in reg.ids().enumerate() {
                write!(out, "{}{}", if i == 0 { "" } else { "," }, id)?;
            }
            writeln!(out)
        }
        Request::Info { id } => match tables.lock().get(*id) {
            Some(e) => {
                write!(out, "ret=0 ")?;
                describe(e.id, &e.table, e.geometry, out)
            }
            None => refuse(out, ENOENT, "no such table"),
        },
        Request::Map(m) => map(tables, m, out),
        Request::Unmap(u) => unmap(tables, u, out),
        Request::IovaToPhys { id, iova } => iova_to_phys(tables, *id, *iova, out),
        Request::Record { id, start } => record(tables, *id, *start, out),
        Request::Trigger(what) => crate::trigger(state, *what, out),
        #[cfg(iopt_dma)]
        Request::Device(d) => crate::hw::execute(state, d, out),
        #[cfg(not(iopt_dma))]
        Request::Device(_) => writeln!(
            out,
            "ret={} src=module why=\"no device DMA on this kernel's driver API\"",
            crate::shim::eopnotsupp().to_errno()
        ),
    }
}

fn refuse(out: &mut Out, err: Error, why: &str) -> FmtResult {
    writeln!(out, "ret={} src=check why=\"{}\"", err.to_errno(), why)
}

/// The reply when [`crate::registry::Entry::begin`] fails: the record is full or memory is.
fn not_begun(out: &mut Out, err: Error) -> FmtResult {
    if err == ENOSPC {
        refuse(out, ENOSPC, "record full (MAX_RUNS runs in this table)")
    } else {
        writeln!(out, "ret={} src=module", err.to_errno())
    }
}

/// Runs a `record` page shows at most (keeps the reply line short).
const RECORD_PAGE: usize = 64;

/// The record of a table: up to [`RECORD_PAGE`] runs from `start` on, `next=` the iova to ask
/// from for the rest.
fn record(tables: &Mutex<Registry>, id: u64, start: u64, out: &mut Out) -> FmtResult {
    let reg = tables.lock();
    let Some(e) = reg.get(id) else {
        return refuse(out, ENOENT, "no such table");
    };
    write!(out, "ret=0 runs=")?;
    let mut runs = e.record.runs().iter().filter(|r| r.iova >= start);
    for (i, r) in runs.by_ref().take(RECORD_PAGE).enumerate() {
        let sep = if i == 0 { "" } else { "," };
        write!(out, "{}{:#x}:{:#x}:{:#x}", sep, r.iova, r.size, r.pgsize)?;
    }
    match runs.next() {
        Some(r) => writeln!(out, " next={:#x}", r.iova),
        None => writeln!(out),
    }
}

fn describe(id: u32, table: &Table, g: Geometry, out: &mut Out) -> FmtResult {
    // SAFETY: the table is never handed to a device, so no device uses it when it is dropped.
    let ttbr = unsafe { table.pgt.ttbr() };
    // SAFETY: `raw_cfg` points into the table, which `table` keeps alive; io-pgtable writes the
    // config only when it creates the table. The union holds `arm_lpae_s1_cfg`: the table's
    // format is `ARM64LPAES1`.
    let (quirks, coherent, tcr) = unsafe {
        let cfg = &*table.pgt.raw_cfg();
        let tcr = &cfg.__bindgen_anon_1.arm_lpae_s1_cfg.tcr;
        let fields = [tcr.tsz(), tcr.tg(), tcr.irgn(), tcr.orgn(), tcr.sh(), tcr.ips()];
        (cfg.quirks, cfg.coherent_walk, fields)
    };
    writeln!(
        out,
        "id={} fmt=arm64-lpae-s1 ttbr={:#x} mair={:#x} ias={} oas={} pgsizes={:#x} quirks={:#x} \
         coherent_walk={} tcr_t0sz={} tcr_tg0={} tcr_irgn0={} tcr_orgn0={} tcr_sh0={} tcr_ips={}",
        id,
        ttbr,
        table.pgt.mair(),
        g.ias,
        g.oas,
        g.pgsizes,
        quirks,
        u8::from(coherent),
        tcr[0],
        tcr[1],
        tcr[2],
        tcr[3],
        tcr[4],
        tcr[5]
    )
}

fn create(
    dev: &'static Device<Bound>,
    tables: &Mutex<Registry>,
    cfg: Config,
    out: &mut Out,
) -> FmtResult {
    if !(12..=52).contains(&cfg.ias) || !(12..=52).contains(&cfg.oas) {
        return refuse(out, EINVAL, "ias and oas must be 12..=52");
    }
    if cfg.quirks & QUIRK_ARM_TTBR1 != 0 {
        return refuse(out, EINVAL, "quirk ARM_TTBR1 (upper-half iovas) not modelled here");
    }
    if cfg.quirks & !(QUIRKS_PASSED | QUIRKS_OF_OTHER_FORMATS) != 0 {
        return refuse(out, EINVAL, "quirk bits that name no io-pgtable quirk");
    }
    if cfg.pgsize_bitmap == 0 {
        return refuse(out, EINVAL, "empty pgsize bitmap");
    }
    let pgt = match crate::shim::new_table(dev, cfg) {
        Ok(p) => p,
        Err(e) => {
            return writeln!(
                out,
                "ret={} src=pgtable why=\"io-pgtable refused the configuration\"",
                e.to_errno()
            )
        }
    };
    // SAFETY: `raw_cfg` points into the table `pgt` owns, which nothing else can reach yet.
    // io-pgtable narrowed the bitmap to what the format supports, and clamped ias and oas to
    // what the granule allows, when it created the table: the checks use what it kept.
    let (effective, ias_kept, oas_kept) = unsafe {
        let cfg = &*pgt.raw_cfg();
        (cfg.pgsize_bitmap as u64, cfg.ias, cfg.oas)
    };
    // The smallest page is the granule; an input space no larger than one granule has no
    // level to walk, and io-pgtable WARNs on every map and iova_to_phys of such a table.
    if effective == 0 || ias_kept <= effective.trailing_zeros() {
        return refuse(out, EINVAL, "ias at or below the granule shift");
    }
    let table = match Arc::new(Table { pgt }, GFP_KERNEL) {
        Ok(t) => t,
        Err(_) => return writeln!(out, "ret=-12 src=module"),
    };
    let geometry = Geometry {
        ias: ias_kept,
        oas: oas_kept,
        pgsizes: effective,
    };
    let mut reg = tables.lock();
    if reg.full() {
        return refuse(out, ENOSPC, "too many tables");
    }
    match reg.add(table, geometry) {
        Ok(e) => {
            write!(out, "ret=0 ")?;
            describe(e.id, &e.table, e.geometry, out)
        }
        Err(_) => writeln!(out, "ret=-12 src=module"),
    }
}

/// The prot bits `map_pages` knows.
const KNOWN_PROT: u64 =
    (prot::READ | prot::WRITE | prot::CACHE | prot::NOEXEC | prot::MMIO | prot::PRIVILEGED) as u64;

fn map(tables: &Mutex<Registry>, m: &MapRequest, out: &mut Out) -> FmtResult {
    let size = m.pgsize.checked_mul(m.pgcount);
    // What the call may touch; for a checked request (which passed the checks) exactly
    // `[iova, iova + size)`.
    let (start, end) = span(m.iova, m.pgsize, m.pgcount);
    let (table, op) = {
        let mut reg = tables.lock();
        let Some(e) = reg.get_mut(m.id) else {
            return refuse(out, ENOENT, "no such table");
        };
        if m.checked {
            let checks = e
                .geometry
                .check_iova(m.iova, m.pgsize, m.pgcount)
                .and_then(|size| e.geometry.check_paddr(m.paddr, m.pgsize, size));
            if let Err((err, why)) = checks {
                return refuse(out, err, why);
            }
            if m.prot & !KNOWN_PROT != 0 {
                return refuse(out, EINVAL, "unknown prot bits");
            }
            if m.prot & u64::from(prot::READ | prot::WRITE) == 0 {
                return refuse(out, EINVAL, "prot has neither read nor write");
            }
            if e.record.overlaps(m.iova, end) {
                return refuse(out, EEXIST, "overlaps an existing mapping");
            }
        }
        // Unchecked requests too: io-pgtable's walks and frees of one range must never run
        // beside another request's on the same range.
        if e.busy(start, end) {
            return refuse(out, EBUSY, "overlaps an operation in flight");
        }
        // Room for the run this map records, taken now: once io-pgtable has mapped something,
        // recording it must not fail.
        match e.begin(start, end, 1) {
            Ok(op) => (e.table.clone(), op),
            Err(err) => return not_begun(out, err),
        }
    };
    // SAFETY: for `map`, the checks above found nothing recorded in the range (the record holds
    // every mapping made here: room to record one is taken before the call), and the range is
    // busy until the record is updated, so no other request (of any verb) touches it
    // meanwhile. No device ever walks the table, so any paddr may be mapped. `map_unchecked`
    // skips the record checks to break the contract on purpose (io-pgtable-arm detects a map
    // over a mapping and fails with -EEXIST), but not the busy range.
    let (mapped, res) = unsafe {
        table.pgt.map_pages(
            m.iova as usize,
            m.paddr,
            m.pgsize as usize,
            m.pgcount as usize,
            m.prot as u32,
            GFP_KERNEL,
        )
    };
    let ret = match res {
        Ok(()) => 0,
        Err(e) => e.to_errno(),
    };
    // Never record more than io-pgtable says it mapped and the table shows: a `mapped` that
    // is not a believable prefix of the request (io-pgtable-arm reports one near 2^64 for a
    // pgcount it reads as a negative int) is checked leaf by leaf with `iova_to_phys` while
    // the range is still busy, and only the prefix found mapped is recorded.
    let recorded = if believable(m.iova, m.pgsize, size, mapped as u64) {
        mapped as u64
    } else {
        // the smaller of the two: a record holding less than the table only makes later
        // checked requests refuse (or C fail with -EEXIST); holding more would not be safe
        let pages = (mapped as u64).checked_div(m.pgsize).unwrap_or(0);
        probe(&table, m).min(pages.saturating_mul(m.pgsize))
    };
    let mut reg = tables.lock();
    // The entry is still there: `destroy` refuses while a range is busy.
    if let Some(e) = reg.get_mut(m.id) {
        let slots = e.finish(op);
        if recorded == 0 {
            e.record.release(slots);
        } else if e
            .record
            .insert(
                slots,
                Run {
                    iova: m.iova,
                    size: recorded,
                    pgsize: m.pgsize,
                },
            )
            .is_err()
        {
            // Cannot happen: the slot taken above holds room for the run.
            return writeln!(
                out,
                "ret=-12 src=module mapped={:#x} why=\"record out of memory\"",
                mapped
            );
        }
    }
    if recorded != mapped as u64 {
        return writeln!(
            out,
            "ret={} src=pgtable mapped={:#x} recorded={:#x} why=\"io-pgtable's mapped is not \
             a page-aligned prefix of the request; only what it and the table both show is \
             recorded\"",
            ret, mapped, recorded
        );
    }
    writeln!(out, "ret={} src=pgtable mapped={:#x}", ret, mapped)
}

/// Leaves checked by [`probe`] at most.
const PROBE_LEAVES: u64 = 4096;

/// The prefix of `m` that the table really maps (each leaf translating to its own paddr), found
/// with `iova_to_phys`, for when io-pgtable's `mapped` cannot be believed. The caller holds the
/// range busy. A leaf mapped at paddr 0 reads like no leaf, so such a prefix is not recorded:
/// the record errs towards holding less, and checked maps over it fail in C with -EEXIST.
fn probe(table: &Table, m: &MapRequest) -> u64 {
    let Some(ias) = table_ias(table) else {
        return 0;
    };
    let mut done = 0u64;
    for i in 0..m.pgcount.min(PROBE_LEAVES) {
        let (Some(off), Some(pa)) = (
            i.checked_mul(m.pgsize),
            i.checked_mul(m.pgsize).and_then(|o| m.paddr.checked_add(o)),
        ) else {
            break;
        };
        let Some(leaf) = m.iova.checked_add(off) else {
            break;
        };
        if leaf >> ias != 0 || pa == 0 || phys_of(table, leaf) != Some(pa) {
            break;
        }
        done = off + m.pgsize;
    }
    done
}

fn table_ias(table: &Table) -> Option<u32> {
    // SAFETY: `raw_cfg` points into the table, which `table` keeps alive; the config is only
    // written when the table is created.
    let ias = unsafe { (*table.pgt.raw_cfg()).ias };
    (ias < 64).then_some(ias)
}

/// `iova_to_phys` of io-pgtable, for an iova below 2^ias that the caller holds busy.
fn phys_of(table: &Table, iova: u64) -> Option<u64> {
    let ops = table.pgt.raw_ops();
    // SAFETY: `ops` belongs to the table, which `table` keeps alive. The walk only reads the
    // table, and the caller holds `iova` busy, so no other request frees the tables it walks.
    unsafe { (*ops).iova_to_phys.map(|f| f(ops, iova as usize) as u64) }
}

fn unmap(tables: &Mutex<Registry>, u: &UnmapRequest, out: &mut Out) -> FmtResult {
    // What the call may touch (and free); for a checked request exactly `[iova, iova + size)`.
    let (start, end) = span(u.iova, u.pgsize, u.pgcount);
    let (table, op) = {
        let mut reg = tables.lock();
        let Some(e) = reg.get_mut(u.id) else {
            return refuse(out, ENOENT, "no such table");
        };
        if u.checked {
            if let Err((err, why)) = e.geometry.check_iova(u.iova, u.pgsize, u.pgcount) {
                return refuse(out, err, why);
            }
        }
        // Unchecked requests too: an unmap frees tables another request may be walking.
        if e.busy(start, end) {
            return refuse(out, EBUSY, "overlaps an operation in flight");
        }
        if u.checked {
            if !e.record.tiled(u.iova, end, u.pgsize) {
                return refuse(
                    out,
                    ENOENT,
                    "range is not exactly covered by mappings of pgsize or smaller",
                );
            }
        }
        // Room for the runs forgetting may split, taken now: once io-pgtable has unmapped
        // something, forgetting it must not fail.
        let runs = e.record.forget_slots(u.iova);
        match e.begin(start, end, runs) {
            Ok(op) => (e.table.clone(), op),
            Err(err) => return not_begun(out, err),
        }
    };
    // SAFETY: for `unmap`, the record shows the range exactly covered by earlier mappings (of
    // leaves no larger than pgsize), and the range is busy until the record is updated, so no
    // other request (of any verb) touches it meanwhile. `unmap_unchecked` skips the record
    // checks to break the contract on purpose, but not the busy range.
    let unmapped = unsafe {
        table
            .pgt
            .unmap_pages(u.iova as usize, u.pgsize as usize, u.pgcount as usize)
    };
    let mut reg = tables.lock();
    // The entry is still there: `destroy` refuses while a range is busy.
    if let Some(e) = reg.get_mut(u.id) {
        let slots = e.finish(op);
        if unmapped == 0 {
            e.record.release(slots);
        } else if e
            .record
            .forget(slots, u.iova, u.iova.saturating_add(unmapped as u64))
            .is_err()
        {
            // Only if an unchecked request changed the record meanwhile and memory ran out; the
            // record still holds the range, so checked maps keep away from it.
            return writeln!(
                out,
                "ret=-12 src=module unmapped={:#x} why=\"record out of memory\"",
                unmapped
            );
        }
    }
    writeln!(out, "ret=0 src=pgtable unmapped={:#x}", unmapped)
}

fn iova_to_phys(tables: &Mutex<Registry>, id: u64, iova: u64, out: &mut Out) -> FmtResult {
    let end = iova.saturating_add(1);
    let (table, op) = {
        let mut reg = tables.lock();
        let Some(e) = reg.get_mut(id) else {
            return refuse(out, ENOENT, "no such table");
        };
        if iova >> e.geometry.ias != 0 {
            return refuse(out, ERANGE, "iova beyond ias");
        }
        if e.busy(iova, end) {
            return refuse(out, EBUSY, "overlaps an operation in flight");
        }
        match e.begin(iova, end, 0) {
            Ok(op) => (e.table.clone(), op),
            Err(err) => return not_begun(out, err),
        }
    };
    // `iova` is busy meanwhile and below 2^ias (checked above).
    let phys = phys_of(&table, iova);
    let mut reg = tables.lock();
    if let Some(e) = reg.get_mut(id) {
        let slots = e.finish(op);
        e.record.release(slots);
    }
    drop(reg);
    match phys {
        Some(phys) => writeln!(out, "ret=0 phys={:#x}", phys),
        None => refuse(out, crate::shim::eopnotsupp(), "no iova_to_phys"),
    }
}
