// SPDX-License-Identifier: GPL-2.0

//! iopt-hil test module: drives `kernel::iommu::pgtable::IoPageTable` from debugfs.
//!
//! One file, `/sys/kernel/debug/iopt_hil/ctl`. A `write()` carries a batch of requests, one per
//! line; they are all parsed before any runs, so a malformed batch changes nothing and the write
//! fails with `EINVAL`. The replies (one line per request, in order) are kept per writing process
//! (thread-group id) and returned by the next `read()` of the same process, so that several guest
//! processes can drive tables at once without seeing each other's replies.
//!
//! Requests (numbers are decimal or 0x-hex; `prot` is `read|write|cache|noexec|mmio|priv` or a
//! number):
//!
//! ```text
//! version
//! create [ias=48] [oas=48] [pgsizes=0x40201000] [quirks=0]
//! destroy id=N
//! list
//! info id=N
//! map id=N iova=A paddr=P pgsize=S pgcount=C prot=F
//! map_unchecked id=N iova=A paddr=P pgsize=S pgcount=C prot=F
//! unmap id=N iova=A pgsize=S pgcount=C
//! unmap_unchecked id=N iova=A pgsize=S pgcount=C
//! iova_to_phys id=N iova=A
//! trigger what=warn|panic|hang      (harness self-tests: a WARN, a panic, a hard hang)
//! ```
//!
//! Replies: `<index> <verb> ret=<errno or 0> [src=check|pgtable] [key=value ...]`. `src=check`
//! means this module refused the request before calling into io-pgtable: the checked requests
//! keep a record of every mapping so that `map_pages`/`unmap_pages` are only called within their
//! Rust safety contract. The `_unchecked` variants skip that record (but still keep it up to
//! date) so that tests can provoke the C-level error paths on purpose.

use core::fmt::Write;
use kernel::{
    debugfs::{Dir, File},
    device::{Bound, Device},
    faux,
    iommu::pgtable::{prot, Config, IoPageTable, ARM64LPAES1},
    new_mutex, new_spinlock_irq,
    prelude::*,
    sync::{Arc, Mutex, SpinLockIrq},
    uaccess::UserSliceReader,
};

module! {
    type: IoptHil,
    name: "iopt_hil",
    authors: ["iopt-hil developers"],
    description: "debugfs driver for the Rust io_pgtable abstraction (iopt-hil test harness)",
    license: "GPL",
}

/// Bumped whenever the request grammar changes; the host client checks it.
const PROTOCOL: u32 = 2;
const MAX_BATCH: usize = 1 << 20;
const MAX_REPLY_SLOTS: usize = 64;
const MAX_TABLES: usize = 256;
const QUIRK_ARM_NS: usize = 1 << 0;
const QUIRK_ARM_HD: usize = 1 << 7;
const QUIRK_NO_WARN: usize = 1 << 9;

/// A run of same-size leaves that this module mapped: `[iova, iova + size)` in `pgsize` leaves.
#[derive(Clone, Copy)]
struct Run {
    iova: u64,
    size: u64,
    pgsize: u64,
}

struct Table {
    pgt: IoPageTable<'static, ARM64LPAES1>,
}

struct Entry {
    id: u32,
    table: Arc<Table>,
    runs: KVec<Run>,
    /// Ranges with an operation in flight (the lock is dropped around io-pgtable calls).
    busy: KVec<(u64, u64)>,
    ias: u32,
    oas: u32,
    pgsizes: u64,
}

struct Inner {
    next_id: u32,
    tables: KVec<Entry>,
    replies: KVec<(i32, KVec<u8>)>,
}

#[pin_data]
struct State {
    dev: &'static Device<Bound>,
    #[pin]
    inner: Mutex<Inner>,
    #[pin]
    spin: SpinLockIrq<(u64,)>,
}

struct IoptHil {
    // Field order is drop order: the file (and every table) goes before the device.
    _ctl: Pin<KBox<File<State>>>,
    _dir: Dir,
    _reg: KBox<faux::Registration>,
}

impl kernel::Module for IoptHil {
    fn init(_module: &'static ThisModule) -> Result<Self> {
        let reg = KBox::new(faux::Registration::new(c"iopt_hil", None)?, GFP_KERNEL)?;
        let fdev: &faux::Device<Bound> = (*reg).as_ref();
        let devref: &Device<Bound> = fdev.as_ref();
        // SAFETY: the registration is boxed (stable address) and, by field order, outlives the
        // debugfs file that owns every table borrowing the device.
        let dev: &'static Device<Bound> = unsafe { &*(devref as *const Device<Bound>) };
        let dir = Dir::new(c"iopt_hil");
        let state = pin_init!(State {
            dev,
            inner <- new_mutex!(Inner { next_id: 1, tables: KVec::new(), replies: KVec::new() }),
            spin <- new_spinlock_irq!((0,)),
        });
        let ctl = KBox::pin_init(
            dir.read_write_callback_file(c"ctl", state, &show_reply, &run_batch),
            GFP_KERNEL,
        )?;
        pr_info!("iopt_hil: ready, protocol {}\n", PROTOCOL);
        Ok(Self { _ctl: ctl, _dir: dir, _reg: reg })
    }
}

fn tgid() -> i32 {
    kernel::current!().tgid()
}

fn show_reply(state: &State, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
    let me = tgid();
    let inner = state.inner.lock();
    for (pid, text) in inner.replies.iter() {
        if *pid == me {
            return f.write_str(core::str::from_utf8(text).unwrap_or("error: reply not utf-8\n"));
        }
    }
    Ok(())
}

fn store_reply(state: &State, text: KVec<u8>) {
    let me = tgid();
    let mut inner = state.inner.lock();
    inner.replies.retain(|(pid, _)| *pid != me);
    if inner.replies.len() >= MAX_REPLY_SLOTS {
        inner.replies.remove(0).ok();
    }
    let _ = inner.replies.push((me, text), GFP_KERNEL);
}

/// A `fmt::Write` sink that grows a `KVec`.
struct Out(KVec<u8>);

impl Write for Out {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        self.0.extend_from_slice(s.as_bytes(), GFP_KERNEL).map_err(|_| core::fmt::Error)
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Verb {
    Version,
    Create,
    Destroy,
    List,
    Info,
    Map,
    MapUnchecked,
    Unmap,
    UnmapUnchecked,
    IovaToPhys,
    Trigger,
}

impl Verb {
    fn parse(s: &str) -> Option<Verb> {
        Some(match s {
            "version" => Verb::Version,
            "create" => Verb::Create,
            "destroy" => Verb::Destroy,
            "list" => Verb::List,
            "info" => Verb::Info,
            "map" => Verb::Map,
            "map_unchecked" => Verb::MapUnchecked,
            "unmap" => Verb::Unmap,
            "unmap_unchecked" => Verb::UnmapUnchecked,
            "iova_to_phys" => Verb::IovaToPhys,
            "trigger" => Verb::Trigger,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            Verb::Version => "version",
            Verb::Create => "create",
            Verb::Destroy => "destroy",
            Verb::List => "list",
            Verb::Info => "info",
            Verb::Map => "map",
            Verb::MapUnchecked => "map_unchecked",
            Verb::Unmap => "unmap",
            Verb::UnmapUnchecked => "unmap_unchecked",
            Verb::IovaToPhys => "iova_to_phys",
            Verb::Trigger => "trigger",
        }
    }

    /// Keys this verb requires and keys it accepts.
    fn keys(self) -> (&'static [&'static str], &'static [&'static str]) {
        match self {
            Verb::Version | Verb::List => (&[], &[]),
            Verb::Create => (&[], &["ias", "oas", "pgsizes", "quirks"]),
            Verb::Destroy | Verb::Info => (&["id"], &[]),
            Verb::Map | Verb::MapUnchecked => {
                (&["id", "iova", "paddr", "pgsize", "pgcount", "prot"], &[])
            }
            Verb::Unmap | Verb::UnmapUnchecked => (&["id", "iova", "pgsize", "pgcount"], &[]),
            Verb::IovaToPhys => (&["id", "iova"], &[]),
            Verb::Trigger => (&["what"], &[]),
        }
    }
}

const KEYS: [&str; 11] =
    ["id", "iova", "paddr", "pgsize", "pgcount", "prot", "ias", "oas", "pgsizes", "quirks", "what"];
const TRIGGER_WARN: u64 = 1;
const TRIGGER_PANIC: u64 = 2;
const TRIGGER_HANG: u64 = 3;

/// One parsed request: the verb and a value for each key in `KEYS` (None if absent).
struct Req {
    verb: Verb,
    vals: [Option<u64>; 11],
}

impl Req {
    fn get(&self, key: &str) -> u64 {
        self.opt(key).unwrap_or(0)
    }

    fn opt(&self, key: &str) -> Option<u64> {
        KEYS.iter().position(|k| *k == key).and_then(|i| self.vals[i])
    }
}

fn parse_num(s: &str) -> Option<u64> {
    if let Some(hex) = s.strip_prefix("0x") {
        u64::from_str_radix(hex, 16).ok()
    } else {
        s.parse::<u64>().ok()
    }
}

fn parse_prot(s: &str) -> Option<u64> {
    if s.as_bytes().first().map_or(false, |c| c.is_ascii_digit()) {
        return parse_num(s);
    }
    let mut bits = 0u64;
    for flag in s.split('|') {
        bits |= u64::from(match flag {
            "read" => prot::READ,
            "write" => prot::WRITE,
            "cache" => prot::CACHE,
            "noexec" => prot::NOEXEC,
            "mmio" => prot::MMIO,
            "priv" => prot::PRIVILEGED,
            "none" => 0,
            _ => return None,
        });
    }
    Some(bits)
}

/// Parses one request line; on failure says why in `why`.
fn parse_line(line: &str, why: &mut &'static str) -> Option<Req> {
    let mut words = line.split_ascii_whitespace();
    let Some(verb) = words.next().and_then(Verb::parse) else {
        *why = "unknown verb";
        return None;
    };
    let (required, optional) = verb.keys();
    let mut req = Req { verb, vals: [None; 11] };
    for word in words {
        let Some((key, val)) = word.split_once('=') else {
            *why = "expected key=value";
            return None;
        };
        if !required.contains(&key) && !optional.contains(&key) {
            *why = "key not accepted by this verb";
            return None;
        }
        let Some(idx) = KEYS.iter().position(|k| *k == key) else {
            *why = "unknown key";
            return None;
        };
        if req.vals[idx].is_some() {
            *why = "key given twice";
            return None;
        }
        let parsed = match key {
            "prot" => parse_prot(val),
            "what" => match val {
                "warn" => Some(TRIGGER_WARN),
                "panic" => Some(TRIGGER_PANIC),
                "hang" => Some(TRIGGER_HANG),
                _ => None,
            },
            _ => parse_num(val),
        };
        let Some(num) = parsed else {
            *why = "bad value";
            return None;
        };
        req.vals[idx] = Some(num);
    }
    for key in required {
        if req.opt(key).is_none() {
            *why = "missing key";
            return None;
        }
    }
    Some(req)
}

fn run_batch(state: &State, reader: &mut UserSliceReader) -> Result {
    if reader.len() > MAX_BATCH {
        return Err(E2BIG);
    }
    let mut buf = KVec::new();
    let len = reader.len();
    buf.resize(len, 0u8, GFP_KERNEL)?;
    reader.read_slice(&mut buf)?;
    let text = core::str::from_utf8(&buf).map_err(|_| EINVAL)?;

    let mut reqs = KVec::new();
    let mut out = Out(KVec::new());
    for (lineno, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut why = "";
        match parse_line(line, &mut why) {
            Some(req) => reqs.push(req, GFP_KERNEL)?,
            None => {
                let _ = writeln!(out, "parse-error line={} ret=-22 why=\"{}\"", lineno + 1, why);
                store_reply(state, out.0);
                return Err(EINVAL);
            }
        }
    }
    for (idx, req) in reqs.iter().enumerate() {
        let _ = write!(out, "{} {} ", idx, req.verb.name());
        if execute(state, req, &mut out).is_err() {
            let _ = writeln!(out, "ret=-12 src=module why=\"reply out of memory\"");
        }
    }
    store_reply(state, out.0);
    Ok(())
}

fn errno(e: Error) -> i32 {
    e.to_errno()
}

fn refuse(out: &mut Out, err: Error, why: &str) -> core::fmt::Result {
    writeln!(out, "ret={} src=check why=\"{}\"", errno(err), why)
}

fn execute(state: &State, req: &Req, out: &mut Out) -> core::fmt::Result {
    match req.verb {
        Verb::Version => writeln!(out, "ret=0 protocol={}", PROTOCOL),
        Verb::Create => create(state, req, out),
        Verb::Destroy => {
            let mut inner = state.inner.lock();
            let Some(pos) = inner.tables.iter().position(|t| u64::from(t.id) == req.get("id"))
            else {
                return refuse(out, ENOENT, "no such table");
            };
            if !inner.tables[pos].busy.is_empty() {
                return refuse(out, EBUSY, "operation in flight");
            }
            let entry = inner.tables.remove(pos).map_err(|_| core::fmt::Error)?;
            drop(inner);
            drop(entry);
            writeln!(out, "ret=0")
        }
        Verb::List => {
            let inner = state.inner.lock();
            write!(out, "ret=0 ids=")?;
            for (i, t) in inner.tables.iter().enumerate() {
                write!(out, "{}{}", if i == 0 { "" } else { "," }, t.id)?;
            }
            writeln!(out)
        }
        Verb::Info => {
            let inner = state.inner.lock();
            match inner.tables.iter().find(|t| u64::from(t.id) == req.get("id")) {
                Some(t) => {
                    write!(out, "ret=0 ")?;
                    describe(t, out)
                }
                None => refuse(out, ENOENT, "no such table"),
            }
        }
        Verb::Trigger => trigger(state, req.get("what"), out),
        Verb::Map | Verb::MapUnchecked => map(state, req, out),
        Verb::Unmap | Verb::UnmapUnchecked => unmap(state, req, out),
        Verb::IovaToPhys => {
            let table = {
                let inner = state.inner.lock();
                match inner.tables.iter().find(|t| u64::from(t.id) == req.get("id")) {
                    Some(t) => t.table.clone(),
                    None => return refuse(out, ENOENT, "no such table"),
                }
            };
            let ops = table.pgt.raw_ops();
            // SAFETY: `ops` is live while `table` is held; `iova_to_phys` is set for LPAE.
            let phys = unsafe {
                match (*ops).iova_to_phys {
                    Some(f) => f(ops, req.get("iova") as usize),
                    None => return refuse(out, EOPNOTSUPP, "no iova_to_phys"),
                }
            };
            writeln!(out, "ret=0 phys={:#x}", phys)
        }
    }
}

fn describe(t: &Entry, out: &mut Out) -> core::fmt::Result {
    // SAFETY: the table is never handed to a device, so reading its root address is harmless.
    let ttbr = unsafe { t.table.pgt.ttbr() };
    writeln!(
        out,
        "id={} fmt=arm64-lpae-s1 ttbr={:#x} mair={:#x} ias={} oas={} pgsizes={:#x}",
        t.id,
        ttbr,
        t.table.pgt.mair(),
        t.ias,
        t.oas,
        t.pgsizes
    )
}

fn create(state: &State, req: &Req, out: &mut Out) -> core::fmt::Result {
    let ias = req.opt("ias").unwrap_or(48);
    let oas = req.opt("oas").unwrap_or(48);
    let pgsizes = req.opt("pgsizes").unwrap_or(0x4020_1000);
    let quirks = req.opt("quirks").unwrap_or(0) as usize;
    if !(12..=48).contains(&ias) || !(12..=48).contains(&oas) {
        return refuse(out, EINVAL, "ias and oas must be 12..=48");
    }
    if quirks & !(QUIRK_ARM_NS | QUIRK_ARM_HD | QUIRK_NO_WARN) != 0 {
        return refuse(out, EINVAL, "unsupported quirk");
    }
    if pgsizes == 0 {
        return refuse(out, EINVAL, "empty pgsize bitmap");
    }
    let cfg = Config {
        quirks,
        pgsize_bitmap: pgsizes as usize,
        ias: ias as u32,
        oas: oas as u32,
        coherent_walk: true,
    };
    let pgt = match IoPageTable::<ARM64LPAES1>::new(state.dev, cfg) {
        Ok(p) => p,
        Err(e) => return writeln!(out, "ret={} src=pgtable", errno(e)),
    };
    // SAFETY: `raw_cfg` points into the live table; io-pgtable narrowed the bitmap on creation.
    let effective = unsafe { (*pgt.raw_cfg()).pgsize_bitmap } as u64;
    let table = match Arc::new(Table { pgt }, GFP_KERNEL) {
        Ok(t) => t,
        Err(_) => return writeln!(out, "ret=-12 src=module"),
    };
    let mut inner = state.inner.lock();
    if inner.tables.len() >= MAX_TABLES {
        return refuse(out, ENOSPC, "too many tables");
    }
    let id = inner.next_id;
    let entry = Entry {
        id,
        table,
        runs: KVec::new(),
        busy: KVec::new(),
        ias: ias as u32,
        oas: oas as u32,
        pgsizes: effective,
    };
    if inner.tables.push(entry, GFP_KERNEL).is_err() {
        return writeln!(out, "ret=-12 src=module");
    }
    inner.next_id += 1;
    let t = inner.tables.iter().find(|t| t.id == id).ok_or(core::fmt::Error)?;
    write!(out, "ret=0 ")?;
    describe(t, out)
}

/// Checks shared by map and unmap; returns the byte size of the request.
fn check_geometry(e: &Entry, req: &Req) -> core::result::Result<u64, (Error, &'static str)> {
    let pgsize = req.get("pgsize");
    let pgcount = req.get("pgcount");
    let iova = req.get("iova");
    if pgsize == 0 || !pgsize.is_power_of_two() || pgsize & e.pgsizes != pgsize {
        return Err((EINVAL, "pgsize not in the table's bitmap"));
    }
    if pgcount == 0 {
        return Err((EINVAL, "pgcount is 0"));
    }
    let size = pgsize.checked_mul(pgcount).ok_or((ERANGE, "size overflows"))?;
    if iova % pgsize != 0 {
        return Err((EINVAL, "iova not aligned to pgsize"));
    }
    match iova.checked_add(size) {
        Some(end) if end <= 1u64 << e.ias => Ok(size),
        _ => Err((ERANGE, "iova range beyond ias")),
    }
}

fn overlaps(a: u64, b: u64, c: u64, d: u64) -> bool {
    a < d && c < b
}

fn map(state: &State, req: &Req, out: &mut Out) -> core::fmt::Result {
    let checked = req.verb == Verb::Map;
    let (iova, paddr, pgsize, pgcount, prot_bits) =
        (req.get("iova"), req.get("paddr"), req.get("pgsize"), req.get("pgcount"), req.get("prot"));
    let size = pgsize.wrapping_mul(pgcount);
    let table = {
        let mut inner = state.inner.lock();
        let Some(e) = inner.tables.iter_mut().find(|t| u64::from(t.id) == req.get("id")) else {
            return refuse(out, ENOENT, "no such table");
        };
        if checked {
            if let Err((err, why)) = check_geometry(e, req) {
                return refuse(out, err, why);
            }
            if paddr % pgsize != 0 {
                return refuse(out, EINVAL, "paddr not aligned to pgsize");
            }
            if paddr.checked_add(size).map_or(true, |end| end > 1u64 << e.oas) {
                return refuse(out, ERANGE, "paddr range beyond oas");
            }
            let known = u64::from(
                prot::READ | prot::WRITE | prot::CACHE | prot::NOEXEC | prot::MMIO | prot::PRIVILEGED,
            );
            if prot_bits & !known != 0 {
                return refuse(out, EINVAL, "unknown prot bits");
            }
            if prot_bits & u64::from(prot::READ | prot::WRITE) == 0 {
                return refuse(out, EINVAL, "prot has neither read nor write");
            }
            let end = iova + size;
            if e.runs.iter().any(|r| overlaps(iova, end, r.iova, r.iova + r.size)) {
                return refuse(out, EEXIST, "overlaps an existing mapping");
            }
            if e.busy.iter().any(|&(a, b)| overlaps(iova, end, a, b)) {
                return refuse(out, EBUSY, "overlaps an operation in flight");
            }
        }
        if e.busy.push((iova, iova.wrapping_add(size)), GFP_KERNEL).is_err() {
            return writeln!(out, "ret=-12 src=module");
        }
        e.table.clone()
    };
    // SAFETY: for `map`, the checks above and the busy list guarantee that no other operation
    // touches this range and that nothing is mapped in it. `map_unchecked` exists to break the
    // second condition on purpose; io-pgtable-arm detects that case and fails with -EEXIST.
    let (mapped, res) = unsafe {
        table.pgt.map_pages(
            iova as usize,
            paddr,
            pgsize as usize,
            pgcount as usize,
            prot_bits as u32,
            GFP_KERNEL,
        )
    };
    let ret = match res {
        Ok(()) => 0,
        Err(e) => errno(e),
    };
    let mut inner = state.inner.lock();
    if let Some(e) = inner.tables.iter_mut().find(|t| u64::from(t.id) == req.get("id")) {
        e.busy.retain(|(a, _)| *a != iova);
        if mapped > 0 {
            let run = Run { iova, size: mapped as u64, pgsize };
            if e.runs.push(run, GFP_KERNEL).is_ok() {
                e.runs.sort_unstable_by_key(|r| r.iova);
            }
        }
    }
    writeln!(out, "ret={} src=pgtable mapped={:#x}", ret, mapped)
}

/// True if the recorded runs tile `[iova, end)` exactly with leaves no larger than `pgsize`.
fn tiled(runs: &[Run], iova: u64, end: u64, pgsize: u64) -> bool {
    let mut at = iova;
    for r in runs.iter().filter(|r| overlaps(iova, end, r.iova, r.iova + r.size)) {
        if r.iova > at || r.pgsize > pgsize || (at - r.iova) % r.pgsize != 0 {
            return false;
        }
        at = core::cmp::min(end, r.iova + r.size);
        if (at - r.iova) % r.pgsize != 0 {
            return false;
        }
    }
    at == end
}

/// Forgets `[iova, end)` from the record, splitting runs at its edges.
fn forget(runs: &mut KVec<Run>, iova: u64, end: u64) {
    let mut kept = KVec::new();
    for r in runs.iter() {
        let rend = r.iova + r.size;
        if !overlaps(iova, end, r.iova, rend) {
            let _ = kept.push(*r, GFP_KERNEL);
            continue;
        }
        if r.iova < iova {
            let _ = kept.push(Run { iova: r.iova, size: iova - r.iova, pgsize: r.pgsize }, GFP_KERNEL);
        }
        if rend > end {
            let _ = kept.push(Run { iova: end, size: rend - end, pgsize: r.pgsize }, GFP_KERNEL);
        }
    }
    *runs = kept;
}

fn unmap(state: &State, req: &Req, out: &mut Out) -> core::fmt::Result {
    let checked = req.verb == Verb::Unmap;
    let (iova, pgsize, pgcount) = (req.get("iova"), req.get("pgsize"), req.get("pgcount"));
    let size = pgsize.wrapping_mul(pgcount);
    let table = {
        let mut inner = state.inner.lock();
        let Some(e) = inner.tables.iter_mut().find(|t| u64::from(t.id) == req.get("id")) else {
            return refuse(out, ENOENT, "no such table");
        };
        if checked {
            if let Err((err, why)) = check_geometry(e, req) {
                return refuse(out, err, why);
            }
            if e.busy.iter().any(|&(a, b)| overlaps(iova, iova + size, a, b)) {
                return refuse(out, EBUSY, "overlaps an operation in flight");
            }
            if !tiled(&e.runs, iova, iova + size, pgsize) {
                return refuse(out, ENOENT, "range is not exactly covered by mappings of pgsize or smaller");
            }
        }
        if e.busy.push((iova, iova.wrapping_add(size)), GFP_KERNEL).is_err() {
            return writeln!(out, "ret=-12 src=module");
        }
        e.table.clone()
    };
    // SAFETY: for `unmap`, the record shows the range is exactly covered by earlier mappings and
    // the busy list keeps other operations out of it. `unmap_unchecked` breaks this on purpose.
    let unmapped = unsafe { table.pgt.unmap_pages(iova as usize, pgsize as usize, pgcount as usize) };
    let mut inner = state.inner.lock();
    if let Some(e) = inner.tables.iter_mut().find(|t| u64::from(t.id) == req.get("id")) {
        e.busy.retain(|(a, _)| *a != iova);
        if unmapped > 0 {
            forget(&mut e.runs, iova, iova.wrapping_add(unmapped as u64));
        }
    }
    writeln!(out, "ret=0 src=pgtable unmapped={:#x}", unmapped)
}

/// Deliberate faults, so the harness can show it notices them. Never used by contract tests.
fn trigger(state: &State, what: u64, out: &mut Out) -> core::fmt::Result {
    match what {
        TRIGGER_WARN => {
            kernel::warn_on!(true);
            writeln!(out, "ret=0")
        }
        TRIGGER_PANIC => panic!("iopt_hil: panic requested through debugfs"),
        _ => {
            // Spin with interrupts off on this CPU, holding the state lock so that every other
            // request blocks behind it too.
            let _inner = state.inner.lock();
            let lock = state.spin.lock();
            loop {
                core::hint::spin_loop();
                if lock.0 == u64::MAX {
                    break;
                }
            }
            writeln!(out, "ret=0")
        }
    }
}
