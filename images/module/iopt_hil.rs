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
//! create [ias=48] [oas=48] [pgsizes=0x40201000] [quirks=0] [coherent_walk=1]
//! destroy id=N
//! list
//! info id=N
//! map id=N iova=A paddr=P pgsize=S pgcount=C prot=F
//! map_unchecked id=N iova=A paddr=P pgsize=S pgcount=C prot=F
//! unmap id=N iova=A pgsize=S pgcount=C
//! unmap_unchecked id=N iova=A pgsize=S pgcount=C
//! iova_to_phys id=N iova=A
//! record id=N [start=A]            (the mapping record: up to 64 runs from iova A on)
//! trigger what=warn|panic|hang      (harness self-tests: a WARN, a panic, a hard hang)
//! smmu                              (the SMMU this module drives: strtab, cd, sid, IDRs)
//! attach id=N                       (the edu's STE -> a CD built from table N)
//! detach                            (the edu's STE aborts; the ASID is invalidated)
//! dma id=N iova=A len=L dir=to_device|from_device [off=O] [expect=translation|permission|access|addr_size]
//! probe id=N iovas=A[,B...]         (up to 8 device reads of 8 bytes, all edus at once)
//! tlbi [iova=A len=L]               (TLBI_NH_VA over the range, or TLBI_NH_ASID)
//! events                            (SMMU events nobody has read yet)
//! ```
//!
//! `create` and `info` answer with the table as io-pgtable keeps it (`raw_cfg()`): `ttbr`,
//! `mair`, the effective `ias`, `oas` and `pgsizes` (io-pgtable narrows them to what the
//! granule allows), `quirks`, `coherent_walk`, and the translation control a device needs,
//! one field each, as the Arm ARM names them in TCR_ELx / an SMMU context descriptor:
//! `tcr_t0sz tcr_tg0 tcr_irgn0 tcr_orgn0 tcr_sh0 tcr_ips` (the encodings, in decimal;
//! io-pgtable keeps them as bitfields, not as one register value). Quirks `ARM_NS`, `ARM_HD`,
//! `ARM_OUTER_WBWA` and `NO_WARN` are passed on; `ARM_TTBR1` (upper-half input addresses,
//! which the module's checks do not model) and bits that name no quirk are refused
//! (`ret=-22 src=check`); the quirks io-pgtable names for other formats (`NO_PERMS`,
//! `ARM_MTK_EXT`, `ARM_MTK_TTBR_EXT`, `ARM_S2FWB`) are passed on so that io-pgtable's own
//! refusal is seen (`src=pgtable`). `ias` and `oas` are 12..=52 (io-pgtable clamps them to 48
//! except with the 64K granule). The module's device has a 64-bit DMA mask, so that
//! `coherent_walk=0` tables (whose pages io-pgtable maps with the DMA API) can be made.
//! Device requests (`smmu.rs`, `edu.rs`, `hw.rs`, `drivers.rs`; kernels with the `iopt_dma`
//! driver API):
//! the module binds QEMU's SMMUv3 (a platform driver for "arm,smmu-v3", which no kernel driver
//! owns in the harness's config) and QEMU's edu PCI device, enables the SMMU with every stream
//! bypassing, and on `attach` points the edu's stream at a context descriptor built from the
//! table's `ttbr()`, `mair()` and TCR. `dma` moves `L` bytes (at most the device's 4 KiB buffer,
//! from offset `O`) between `iova` and the device, and answers `ret=0 src=device moved=L ns=T`
//! or, if the SMMU recorded a fault, `ret=-14 src=device event=F_... iova=.. sid=.. read=0|1
//! events=N ns=T`. `probe` answers `ret=0 src=device seen=ok,F_TRANSLATION@0x...,...`, one
//! word per iova (every bound edu reads one at a time). Every event is logged; one that a
//! `dma` did not `expect` is logged as `iopt_hil: smmu event ...`, a splat for the harness. Nothing is flushed for the caller:
//! io-pgtable's flush ops are no-ops here, so a test that unmaps invalidates with `tlbi`.
//!
//! Replies: `<index> <verb> ret=<errno or 0> [src=check|pgtable|module] [key=value ...]`.
//! `src=module` means this module ran out of memory (`ret=-12`). `src=check`
//! means this module refused the request before calling into io-pgtable: the checked requests
//! keep a record of every mapping so that `map_pages`/`unmap_pages` are only called within their
//! Rust safety contract. The `_unchecked` variants skip that record (but still keep it up to
//! date) so that tests can provoke the C-level error paths on purpose.
//!
//! Limits, each answered with an errno rather than reaching kmalloc's limit: a write of more
//! than `MAX_BATCH` bytes or `MAX_REQUESTS` requests is refused (`E2BIG`, nothing runs); once
//! a batch's reply nears `MAX_REPLY` bytes, its remaining requests are not run and each answers
//! `ret=-7 src=module`; a table records at most `record::MAX_RUNS` runs (`ENOSPC`); at most
//! 256 tables (`ENOSPC`). A refused write replaces the writer's reply with one
//! `batch-error ret=<errno> why=...` line (or nothing, if even that cannot be stored): the
//! replies of an earlier batch are never read as if they answered it.
//!
//! Reply slots: one per live writing process, `MAX_REPLY_SLOTS` at most, keyed by the process
//! itself (a reference to its group leader, so a reused pid is a different process). When
//! every slot is taken, slots of processes that have been reaped are freed; if none has, the
//! write is refused with `EBUSY` and nothing runs. A live process's reply is never evicted, so
//! no process reads another's reply or a stale one.
//!
//! Layout: this file is the crate root (`module!`, the debugfs file, per-process reply routing
//! and the `trigger` self-test faults); `request.rs` is the grammar (one verb table building
//! typed requests); `exec.rs` runs requests and is the only caller of io-pgtable;
//! `registry.rs` holds the tables, their ids and the ranges in flight; `record.rs` is the
//! mapping record and geometry checks, pure code with its own KUnit suite (`iopt_hil_record`),
//! which runs whenever the module is loaded; `shim.rs` is everything that differs between the
//! kernel versions the module builds against (the io_pgtable API generation and a few kernel
//! APIs), selected by `--cfg` flags from the harness's probe of the tree.

#[cfg(iopt_dma)]
mod drivers;
#[cfg(iopt_dma)]
mod edu;
mod exec;
#[cfg(iopt_dma)]
mod hw;
mod record;
mod registry;
mod request;
mod shim;
#[cfg(iopt_dma)]
mod smmu;

use core::fmt::Write;
use kernel::{
    debugfs::{Dir, File},
    device::{Bound, Device},
    faux, new_mutex,
    prelude::*,
    sync::{aref::ARef, Mutex},
    task::Task,
    uaccess::UserSliceReader,
};
use registry::Registry;
use request::{Trigger, PROTOCOL};

module! {
    type: IoptHil,
    name: "iopt_hil",
    authors: ["iopt-hil developers"],
    description: "debugfs driver for the Rust io_pgtable abstraction (iopt-hil test harness)",
    license: "GPL",
}

const MAX_BATCH: usize = 1 << 20;
const MAX_REQUESTS: usize = 4096;
const MAX_REPLY: usize = 1 << 20;
/// No reply line is longer (the longest, `list` of 256 ids and a `record` page, are ~3 KiB).
const MAX_REPLY_LINE: usize = 8192;
/// The line of a request not run because the reply is full (index, verb, errno) fits in this.
const CUT_LINE: usize = 64;
const MAX_REPLY_SLOTS: usize = 64;

/// The last reply of each writing process.
struct Slot {
    /// The process's group leader: held, so its address names this process and no other.
    owner: ARef<Task>,
    text: KVec<u8>,
}

struct Replies(KVec<Slot>);

impl Replies {
    fn find(&mut self, me: &Task) -> Option<&mut Slot> {
        self.0.iter_mut().find(|s| core::ptr::eq(&*s.owner, me))
    }
}

#[pin_data]
pub(crate) struct State {
    pub(crate) dev: &'static Device<Bound>,
    #[pin]
    pub(crate) tables: Mutex<Registry>,
    #[pin]
    replies: Mutex<Replies>,
    #[pin]
    spin: shim::HangLock<(u64,)>,
}

struct IoptHil {
    // Field order is drop order: the drivers unbind first (the SMMU is disabled and lets go of
    // the attached table), then the file (and every table) goes, then the device.
    #[cfg(iopt_dma)]
    _drivers: drivers::Registrations,
    _ctl: Pin<KBox<File<State>>>,
    _dir: Dir,
    _reg: KBox<faux::Registration>,
}

impl kernel::Module for IoptHil {
    fn init(module: &'static ThisModule) -> Result<Self> {
        let reg = KBox::new(faux::Registration::new(c"iopt_hil", None)?, GFP_KERNEL)?;
        let devref: &Device<Bound> = shim::bound_device(&reg);
        // SAFETY: the registration is boxed (stable address) and, by field order, outlives the
        // debugfs file that owns every table borrowing the device.
        let dev: &'static Device<Bound> = unsafe { &*(devref as *const Device<Bound>) };
        give_dma_mask(dev)?;
        let dir = Dir::new(c"iopt_hil");
        let state = pin_init!(State {
            dev,
            tables <- new_mutex!(Registry::new()),
            replies <- new_mutex!(Replies(KVec::new())),
            spin <- crate::new_hang_lock!((0,)),
        });
        let ctl = KBox::pin_init(
            dir.read_write_callback_file(c"ctl", state, &show_reply, &run_batch),
            GFP_KERNEL,
        )?;
        #[cfg(iopt_dma)]
        let drivers = {
            hw::init();
            drivers::Registrations::new(module)?
        };
        #[cfg(not(iopt_dma))]
        let _ = module;
        pr_info!("iopt_hil: ready, protocol {}\n", PROTOCOL);
        Ok(Self {
            #[cfg(iopt_dma)]
            _drivers: drivers,
            _ctl: ctl,
            _dir: dir,
            _reg: reg,
        })
    }
}

/// Gives the module's faux device a 64-bit DMA mask, as a platform device gets one when it is
/// made (a faux device has none): a table made with `coherent_walk = false` has its pages
/// mapped for the device with the DMA API, which refuses (and WARNs on) a device without one.
fn give_dma_mask(dev: &Device<Bound>) -> Result {
    // `Device` is `repr(transparent)` over `Opaque<bindings::device>`, itself transparent over
    // the C struct and mutable through a shared reference (`Opaque` is an `UnsafeCell`); the
    // kernel crate keeps its own `as_raw` to itself.
    let raw = core::ptr::from_ref(dev).cast::<kernel::bindings::device>().cast_mut();
    // SAFETY: `raw` is the module's own faux device, registered and alive for this call. No
    // table exists yet and nothing else makes DMA mappings for this device, so nothing reads
    // its DMA fields meanwhile. `dma_mask` is pointed at the device's own `coherent_dma_mask`,
    // which lives exactly as long as the device (what `dma_coerce_mask_and_coherent` does for
    // devices their bus gave no mask). Both setters only check the mask and store it.
    unsafe {
        (*raw).dma_mask = &raw mut (*raw).coherent_dma_mask;
        kernel::error::to_result(kernel::bindings::dma_set_mask(raw, u64::MAX))?;
        kernel::error::to_result(kernel::bindings::dma_set_coherent_mask(raw, u64::MAX))
    }
}

fn show_reply(state: &State, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
    let task = kernel::current!();
    let me = task.group_leader();
    let mut replies = state.replies.lock();
    match replies.find(me) {
        Some(slot) => {
            f.write_str(core::str::from_utf8(&slot.text).unwrap_or("error: reply not utf-8\n"))
        }
        None => Ok(()),
    }
}

/// Empties the writer's reply slot, or gives it one: every write starts here, so nothing an
/// earlier batch left can be read as this one's reply. `EBUSY` if every slot belongs to a live
/// process, `ENOMEM` if the slot table cannot grow; either way the batch does not run.
fn claim_slot(state: &State, me: &Task) -> Result {
    let mut replies = state.replies.lock();
    if let Some(slot) = replies.find(me) {
        slot.text = KVec::new();
        return Ok(());
    }
    if replies.0.len() >= MAX_REPLY_SLOTS {
        // A reaped process has no pid namespace any more (its pid is detached): its slot can
        // never be read again. Live (and zombie) processes keep theirs.
        replies.0.retain(|s| s.owner.get_pid_ns().is_some());
    }
    if replies.0.len() >= MAX_REPLY_SLOTS {
        return Err(EBUSY);
    }
    let owner = ARef::from(me);
    replies.0.push(
        Slot {
            owner,
            text: KVec::new(),
        },
        GFP_KERNEL,
    )?;
    Ok(())
}

/// Stores the writer's reply in the slot [`claim_slot`] gave it (still there: only slots of
/// reaped processes are ever freed).
fn store_reply(state: &State, me: &Task, text: KVec<u8>) {
    if let Some(slot) = state.replies.lock().find(me) {
        slot.text = text;
    }
}

/// A refused write: its reply is one line saying why (if memory allows), and its errno.
fn refuse_batch(state: &State, me: &Task, err: Error, why: &str) -> Result {
    let mut out = Out::new(MAX_REPLY_LINE);
    if writeln!(out, "batch-error ret={} why=\"{}\"", err.to_errno(), why).is_ok() {
        store_reply(state, me, out.0);
    }
    Err(err)
}

/// A `fmt::Write` sink that grows a `KVec`, never beyond its limit.
pub(crate) struct Out(KVec<u8>, usize);

impl Out {
    fn new(limit: usize) -> Self {
        Out(KVec::new(), limit)
    }
}

impl Write for Out {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        if self.0.len() + s.len() > self.1 {
            return Err(core::fmt::Error);
        }
        self.0
            .extend_from_slice(s.as_bytes(), GFP_KERNEL)
            .map_err(|_| core::fmt::Error)
    }
}

fn run_batch(state: &State, reader: &mut UserSliceReader) -> Result {
    let task = kernel::current!();
    let me = task.group_leader();
    claim_slot(state, me)?;
    if reader.len() > MAX_BATCH {
        return refuse_batch(state, me, E2BIG, "batch larger than MAX_BATCH bytes");
    }
    let mut buf = KVec::new();
    let len = reader.len();
    if let Err(e) = buf.resize(len, 0u8, GFP_KERNEL) {
        return refuse_batch(state, me, e.into(), "out of memory");
    }
    if let Err(e) = reader.read_slice(&mut buf) {
        return refuse_batch(state, me, e, "cannot read the batch");
    }
    let Ok(text) = core::str::from_utf8(&buf) else {
        return refuse_batch(state, me, EINVAL, "batch not utf-8");
    };

    let requests = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .count();
    if requests > MAX_REQUESTS {
        return refuse_batch(state, me, E2BIG, "more than MAX_REQUESTS requests");
    }
    let mut parsed = KVec::new();
    if let Err(e) = parsed.reserve(requests, GFP_KERNEL) {
        return refuse_batch(state, me, e.into(), "out of memory");
    }
    for (lineno, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match request::parse(line) {
            // Room for every request was reserved above.
            Ok(p) => parsed
                .push_within_capacity(p)
                .map_err(|_| ENOMEM)?,
            Err(why) => {
                let mut out = Out::new(MAX_REPLY_LINE);
                // A reply too long for memory is cut short; the write fails either way.
                let _ = writeln!(
                    out,
                    "parse-error line={} ret=-22 why=\"{}\"",
                    lineno + 1,
                    why
                );
                store_reply(state, me, out.0);
                return Err(EINVAL);
            }
        }
    }
    let mut out = Out::new(MAX_REPLY);
    let n = parsed.len();
    let mut cut = false;
    for (idx, p) in parsed.iter().enumerate() {
        // Run a request only while its reply, and a cut line for each request after it, still
        // fit; otherwise it and every later one answer E2BIG without running.
        let room = MAX_REPLY_LINE + (n - idx) * CUT_LINE;
        cut |= out.0.len() + room > MAX_REPLY;
        if cut {
            let _ = writeln!(out, "{} {} ret=-7 src=module why=\"reply full\"", idx, p.verb);
            continue;
        }
        let at = out.0.len();
        let reply = write!(out, "{} {} ", idx, p.verb)
            .and_then(|()| exec::execute(state, &p.request, &mut out));
        if reply.is_err() {
            // Cut the partial line, keep the reply one line per request.
            out.0.truncate(at);
            let _ = writeln!(out, "{} {} ret=-12 src=module why=\"reply out of memory\"", idx, p.verb);
        }
    }
    store_reply(state, me, out.0);
    Ok(())
}

/// Deliberate faults, so the harness can show it notices them. Never used by contract tests.
///
/// Kept in this file: the harness's self-test looks for `iopt_hil.rs` in the WARN it triggers.
fn trigger(state: &State, what: Trigger, out: &mut Out) -> core::fmt::Result {
    match what {
        Trigger::Warn => {
            kernel::warn_on!(true);
            writeln!(out, "ret=0")
        }
        Trigger::Panic => panic!("iopt_hil: panic requested through debugfs"),
        Trigger::Hang => {
            // Spin with interrupts off on this CPU, holding the state locks so that every other
            // request (and every reply) blocks behind it too.
            let _tables = state.tables.lock();
            let _replies = state.replies.lock();
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
