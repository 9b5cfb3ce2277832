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
//! Replies: `<index> <verb> ret=<errno or 0> [src=check|pgtable|module] [key=value ...]`.
//! `src=module` means this module ran out of memory (`ret=-12`). `src=check`
//! means this module refused the request before calling into io-pgtable: the checked requests
//! keep a record of every mapping so that `map_pages`/`unmap_pages` are only called within their
//! Rust safety contract. The `_unchecked` variants skip that record (but still keep it up to
//! date) so that tests can provoke the C-level error paths on purpose.
//!
//! Layout: this file is the crate root (`module!`, the debugfs file, per-process reply routing
//! and the `trigger` self-test faults); `request.rs` is the grammar (one verb table building
//! typed requests); `exec.rs` runs requests and is the only caller of io-pgtable;
//! `registry.rs` holds the tables, their ids and the ranges in flight; `record.rs` is the
//! mapping record and geometry checks, pure code with its own KUnit suite (`iopt_hil_record`),
//! which runs whenever the module is loaded; `shim.rs` is everything that differs between the
//! kernel versions the module builds against (the io_pgtable API generation and a few kernel
//! APIs), selected by `--cfg` flags from the harness's probe of the tree.

mod exec;
mod record;
mod registry;
mod request;
mod shim;

use core::fmt::Write;
use kernel::{
    debugfs::{Dir, File},
    device::{Bound, Device},
    faux, new_mutex,
    prelude::*,
    sync::Mutex,
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
const MAX_REPLY_SLOTS: usize = 64;

/// The last reply of each writing process (thread-group id).
struct Replies(KVec<(i32, KVec<u8>)>);

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
    // Field order is drop order: the file (and every table) goes before the device.
    _ctl: Pin<KBox<File<State>>>,
    _dir: Dir,
    _reg: KBox<faux::Registration>,
}

impl kernel::Module for IoptHil {
    fn init(_module: &'static ThisModule) -> Result<Self> {
        let reg = KBox::new(faux::Registration::new(c"iopt_hil", None)?, GFP_KERNEL)?;
        let devref: &Device<Bound> = shim::bound_device(&reg);
        // SAFETY: the registration is boxed (stable address) and, by field order, outlives the
        // debugfs file that owns every table borrowing the device.
        let dev: &'static Device<Bound> = unsafe { &*(devref as *const Device<Bound>) };
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
        pr_info!("iopt_hil: ready, protocol {}\n", PROTOCOL);
        Ok(Self {
            _ctl: ctl,
            _dir: dir,
            _reg: reg,
        })
    }
}

fn tgid() -> i32 {
    shim::current_tgid()
}

fn show_reply(state: &State, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
    let me = tgid();
    let replies = state.replies.lock();
    for (pid, text) in replies.0.iter() {
        if *pid == me {
            return f.write_str(core::str::from_utf8(text).unwrap_or("error: reply not utf-8\n"));
        }
    }
    Ok(())
}

fn store_reply(state: &State, text: KVec<u8>) -> Result {
    let me = tgid();
    let mut replies = state.replies.lock();
    replies.0.retain(|(pid, _)| *pid != me);
    if replies.0.len() >= MAX_REPLY_SLOTS {
        replies.0.remove(0).ok();
    }
    replies.0.push((me, text), GFP_KERNEL)?;
    Ok(())
}

/// A `fmt::Write` sink that grows a `KVec`.
pub(crate) struct Out(KVec<u8>);

impl Write for Out {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        self.0
            .extend_from_slice(s.as_bytes(), GFP_KERNEL)
            .map_err(|_| core::fmt::Error)
    }
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

    let mut parsed = KVec::new();
    let mut out = Out(KVec::new());
    for (lineno, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match request::parse(line) {
            Ok(p) => parsed.push(p, GFP_KERNEL)?,
            Err(why) => {
                // A reply too long for memory is cut short; the write fails either way.
                let _ = writeln!(
                    out,
                    "parse-error line={} ret=-22 why=\"{}\"",
                    lineno + 1,
                    why
                );
                store_reply(state, out.0)?;
                return Err(EINVAL);
            }
        }
    }
    for (idx, p) in parsed.iter().enumerate() {
        let reply = write!(out, "{} {} ", idx, p.verb)
            .and_then(|()| exec::execute(state, &p.request, &mut out));
        if reply.is_err() {
            let _ = writeln!(out, "ret=-12 src=module why=\"reply out of memory\"");
        }
    }
    store_reply(state, out.0)
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
