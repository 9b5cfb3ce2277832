// SPDX-License-Identifier: GPL-2.0

//! The mapping record: what this module has mapped in one table, and the geometry checks that
//! keep a checked request within the safety contract of `map_pages` and `unmap_pages`.
//!
//! Pure bookkeeping, with no locks and no io-pgtable calls: the registry keeps one [`Record`]
//! per table and only touches it under its lock.
//!
//! A request must never lose a live mapping from the record, or a later checked request could
//! break the contract. So a request takes [`Slots`] (room for the runs it may add) before it
//! calls into io-pgtable, and spends them afterwards without allocating.

use kernel::{alloc::AllocError, prelude::*};

/// At most this many runs in one table's record: a request that would need more is refused
/// with `ENOSPC` before it reaches io-pgtable (the record never grows towards kmalloc's limit).
pub(crate) const MAX_RUNS: usize = 8192;

/// A run of same-size leaves that this module mapped: `[iova, iova + size)` in `pgsize` leaves.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct Run {
    pub(crate) iova: u64,
    pub(crate) size: u64,
    pub(crate) pgsize: u64,
}

impl Run {
    pub(crate) fn end(&self) -> u64 {
        self.iova + self.size
    }
}

/// True if `[a, b)` and `[c, d)` share an address.
pub(crate) fn overlaps(a: u64, b: u64, c: u64, d: u64) -> bool {
    a < d && c < b
}

/// Room in a [`Record`] for more runs, taken by one request before its io-pgtable call.
///
/// Spend it with [`Record::insert`] or [`Record::forget`], or give it back with
/// [`Record::release`].
#[must_use]
pub(crate) struct Slots(usize);

/// The runs this module mapped in one table, sorted by iova.
///
/// # Invariants
///
/// `runs` has spare capacity for at least `reserved` more runs: the [`Slots`] handed out and
/// not yet spent or released.
pub(crate) struct Record {
    runs: KVec<Run>,
    reserved: usize,
}

impl Record {
    pub(crate) const fn new() -> Self {
        Record {
            runs: KVec::new(),
            reserved: 0,
        }
    }

    pub(crate) fn runs(&self) -> &[Run] {
        &self.runs
    }

    /// True if anything recorded overlaps `[iova, end)`.
    pub(crate) fn overlaps(&self, iova: u64, end: u64) -> bool {
        self.runs
            .iter()
            .any(|r| overlaps(iova, end, r.iova, r.end()))
    }

    /// True if the recorded runs tile `[iova, end)` exactly with leaves no larger than `pgsize`.
    pub(crate) fn tiled(&self, iova: u64, end: u64, pgsize: u64) -> bool {
        let mut at = iova;
        for r in self
            .runs
            .iter()
            .filter(|r| overlaps(iova, end, r.iova, r.end()))
        {
            if r.iova > at || r.pgsize > pgsize || (at - r.iova) % r.pgsize != 0 {
                return false;
            }
            at = core::cmp::min(end, r.end());
            if (at - r.iova) % r.pgsize != 0 {
                return false;
            }
        }
        at == end
    }

    /// Takes room for `n` more runs, on top of the room other requests hold: `ENOSPC` beyond
    /// [`MAX_RUNS`], `ENOMEM` if the room cannot be allocated.
    pub(crate) fn reserve(&mut self, n: usize) -> Result<Slots> {
        let total = self.reserved.checked_add(n).ok_or(ENOSPC)?;
        if self.runs.len().saturating_add(total) > MAX_RUNS {
            return Err(ENOSPC);
        }
        self.runs.reserve(total, GFP_KERNEL)?;
        // INVARIANT: `reserve` left room for `total` more runs.
        self.reserved = total;
        Ok(Slots(n))
    }

    /// The slots forgetting a range that starts at `iova` needs: forgetting only adds a run
    /// when it splits one in two, and such a run contains `iova`.
    pub(crate) fn forget_slots(&self, iova: u64) -> usize {
        self.runs
            .iter()
            .filter(|r| r.iova < iova && iova < r.end())
            .count()
    }

    /// Gives back slots that were not needed.
    pub(crate) fn release(&mut self, slots: Slots) {
        // INVARIANT: the room stays; only the promise ends.
        self.reserved -= slots.0;
    }

    /// Records `run`. Allocates only if `slots` hold no room; if that fails, nothing changes.
    pub(crate) fn insert(&mut self, slots: Slots, run: Run) -> Result<(), AllocError> {
        self.release(slots);
        // No allocation if `slots` held room for a run.
        self.runs.reserve(self.reserved + 1, GFP_KERNEL)?;
        let at = self.runs.partition_point(|r| r.iova <= run.iova);
        // INVARIANT: one run more, and room for `reserved` more is left.
        self.runs
            .insert_within_capacity(at, run)
            .map_err(|_| AllocError)
    }

    /// Forgets `[iova, end)`, splitting runs at its edges. Allocates only if `slots` hold too
    /// little room (another request changed the record since they were taken); if that fails,
    /// nothing changes, so the record still holds every mapping it held.
    pub(crate) fn forget(&mut self, slots: Slots, iova: u64, end: u64) -> Result<(), AllocError> {
        self.release(slots);
        let splits = self
            .runs
            .iter()
            .filter(|r| r.iova < iova && r.end() > end)
            .count();
        if self.runs.len() + self.reserved + splits > MAX_RUNS {
            return Err(AllocError);
        }
        self.runs.reserve(self.reserved + splits, GFP_KERNEL)?;
        let n = self.runs.len();
        // The right-hand pieces of split runs go at the end (in the room reserved above).
        for i in 0..n {
            let r = self.runs[i];
            if r.iova < iova && r.end() > end {
                let right = Run {
                    iova: end,
                    size: r.end() - end,
                    pgsize: r.pgsize,
                };
                if self.runs.push_within_capacity(right).is_err() {
                    self.runs.truncate(n);
                    return Err(AllocError);
                }
            }
        }
        for r in self.runs[..n].iter_mut() {
            if !overlaps(iova, end, r.iova, r.end()) {
                continue;
            }
            if r.iova < iova {
                r.size = iova - r.iova;
            } else if r.end() > end {
                *r = Run {
                    iova: end,
                    size: r.end() - end,
                    pgsize: r.pgsize,
                };
            } else {
                r.size = 0;
            }
        }
        // INVARIANT: at most `splits` runs more, and room for `reserved` more is left.
        self.runs.retain(|r| r.size != 0);
        self.runs.sort_unstable_by_key(|r| r.iova);
        Ok(())
    }

    /// Spare room in `runs` (for the tests: it must cover every reservation).
    #[cfg(CONFIG_KUNIT = "y")]
    fn spare(&self) -> usize {
        self.runs.capacity() - self.runs.len()
    }
}

/// The range an io-pgtable call on `pgcount` leaves of `pgsize` at `iova` may touch, for the
/// busy list: `[iova, iova + size)` widened to whole `pgsize` leaves (io-pgtable indexes by the
/// leaf an unaligned iova falls in), saturating at the top of the address space, so that an
/// `_unchecked` request with nonsense numbers still keeps everyone else out of what it touches.
pub(crate) fn span(iova: u64, pgsize: u64, pgcount: u64) -> (u64, u64) {
    let Some(align) = pgsize.max(1).checked_next_power_of_two() else {
        return (0, u64::MAX);
    };
    let start = iova & !(align - 1);
    let end = pgsize
        .checked_mul(pgcount)
        .and_then(|size| iova.checked_add(size))
        .and_then(|end| end.checked_next_multiple_of(align))
        .unwrap_or(u64::MAX);
    (start, end.max(start))
}

/// The next table id after `last`: never 0, never one `taken` says is live, wrapping at
/// `u32::MAX`. With fewer than `live + 1` ids taken among any `live + 1` in a row, it finds one
/// within `live + 1` steps; `None` only if every id is taken.
pub(crate) fn next_id(last: u32, live: usize, taken: impl Fn(u32) -> bool) -> Option<u32> {
    let mut id = last;
    for _ in 0..=live {
        id = id.checked_add(1).unwrap_or(1);
        if !taken(id) {
            return Some(id);
        }
    }
    None
}

/// What the record may take from a map: `mapped` bytes from io-pgtable, if it is a whole number
/// of `pgsize` leaves, no more than the `size` asked for, and `iova + mapped` does not wrap.
/// Anything else is nonsense from the C side and is not believed.
pub(crate) fn believable(iova: u64, pgsize: u64, size: Option<u64>, mapped: u64) -> bool {
    pgsize != 0
        && mapped % pgsize == 0
        && size.map_or(false, |size| mapped <= size)
        && iova.checked_add(mapped).is_some()
}

/// Why a checked request was refused: its errno and the reply's `why` text.
pub(crate) type Refusal = (Error, &'static str);

/// The shape of a table that the geometry checks need.
#[derive(Clone, Copy)]
pub(crate) struct Geometry {
    pub(crate) ias: u32,
    pub(crate) oas: u32,
    pub(crate) pgsizes: u64,
}

impl Geometry {
    /// Checks `pgcount` leaves of `pgsize` at `iova`; returns their size in bytes.
    pub(crate) fn check_iova(&self, iova: u64, pgsize: u64, pgcount: u64) -> Result<u64, Refusal> {
        if pgsize == 0 || !pgsize.is_power_of_two() || pgsize & self.pgsizes != pgsize {
            return Err((EINVAL, "pgsize not in the table's bitmap"));
        }
        if pgcount == 0 {
            return Err((EINVAL, "pgcount is 0"));
        }
        // io-pgtable-arm counts the entries of one call in an `int` (`min_t(int, pgcount, ..)`):
        // a larger pgcount turns negative or into 0 there, and "maps" nonsense.
        if pgcount > i32::MAX as u64 {
            return Err((ERANGE, "pgcount beyond what io-pgtable counts (INT_MAX)"));
        }
        let size = pgsize
            .checked_mul(pgcount)
            .ok_or((ERANGE, "size overflows"))?;
        if iova % pgsize != 0 {
            return Err((EINVAL, "iova not aligned to pgsize"));
        }
        match iova.checked_add(size) {
            Some(end) if end <= 1u64 << self.ias => Ok(size),
            _ => Err((ERANGE, "iova range beyond ias")),
        }
    }

    /// Checks the output range of a map of `size` bytes in leaves of `pgsize`.
    pub(crate) fn check_paddr(&self, paddr: u64, pgsize: u64, size: u64) -> Result<(), Refusal> {
        if pgsize == 0 || paddr % pgsize != 0 {
            return Err((EINVAL, "paddr not aligned to pgsize"));
        }
        match paddr.checked_add(size) {
            Some(end) if end <= 1u64 << self.oas => Ok(()),
            _ => Err((ERANGE, "paddr range beyond oas")),
        }
    }
}

#[kunit_tests(iopt_hil_record)]
mod tests {
    use super::*;

    const K4: u64 = 0x1000;
    const M2: u64 = 0x20_0000;
    const G1: u64 = 0x4000_0000;
    const GEOMETRY: Geometry = Geometry {
        ias: 48,
        oas: 40,
        pgsizes: K4 | M2 | G1,
    };

    fn run(iova: u64, size: u64, pgsize: u64) -> Run {
        Run { iova, size, pgsize }
    }

    /// A record holding `runs`, inserted in the given order.
    fn record(runs: &[Run]) -> Result<Record> {
        let mut rec = Record::new();
        for r in runs {
            let slots = rec.reserve(1)?;
            rec.insert(slots, *r)?;
        }
        Ok(rec)
    }

    /// Forgets `[iova, end)` the way an unmap does: slots first.
    fn forget(rec: &mut Record, iova: u64, end: u64) -> Result {
        let slots = rec.reserve(rec.forget_slots(iova))?;
        Ok(rec.forget(slots, iova, end)?)
    }

    #[test]
    fn runs_stay_sorted() -> Result {
        let rec = record(&[run(8 * K4, K4, K4), run(0, K4, K4), run(4 * K4, K4, K4)])?;
        assert_eq!(
            rec.runs(),
            &[run(0, K4, K4), run(4 * K4, K4, K4), run(8 * K4, K4, K4)]
        );
        Ok(())
    }

    #[test]
    fn tiled_exact_cover() -> Result {
        let rec = record(&[run(0, 4 * K4, K4), run(4 * K4, 4 * K4, K4)])?;
        assert!(rec.tiled(0, 8 * K4, K4));
        assert!(rec.tiled(0, K4, K4));
        assert!(rec.tiled(3 * K4, 5 * K4, K4)); // across the seam between two runs
        assert!(rec.tiled(0, 8 * K4, M2)); // smaller leaves than pgsize are fine
        assert!(!rec.tiled(0, 9 * K4, K4)); // runs past the end of the record
        assert!(!Record::new().tiled(0, K4, K4));
        Ok(())
    }

    #[test]
    fn tiled_gaps() -> Result {
        let rec = record(&[run(0, K4, K4), run(2 * K4, K4, K4)])?;
        assert!(!rec.tiled(0, 3 * K4, K4));
        assert!(!rec.tiled(K4, 2 * K4, K4)); // all gap
        assert!(!rec.tiled(K4, 3 * K4, K4)); // starts in the gap
        assert!(rec.tiled(2 * K4, 3 * K4, K4));
        Ok(())
    }

    #[test]
    fn tiled_mixed_page_sizes() -> Result {
        let rec = record(&[run(0, M2, K4), run(M2, M2, M2), run(2 * M2, 2 * K4, K4)])?;
        assert!(rec.tiled(0, 2 * M2 + 2 * K4, M2));
        assert!(!rec.tiled(0, 2 * M2, K4)); // the 2M leaf is larger than pgsize
        assert!(rec.tiled(0, M2, K4));
        Ok(())
    }

    #[test]
    fn tiled_larger_leaf_than_pgsize() -> Result {
        let rec = record(&[run(0, 2 * M2, M2)])?;
        assert!(!rec.tiled(0, K4, K4));
        assert!(!rec.tiled(M2, M2 + K4, K4));
        assert!(rec.tiled(M2, 2 * M2, M2));
        assert!(!rec.tiled(0, M2 + K4, M2)); // ends inside a leaf
        assert!(rec.tiled(0, 2 * M2, G1));
        Ok(())
    }

    #[test]
    fn tiled_inside_a_run_on_leaf_boundaries() -> Result {
        let rec = record(&[run(0, 16 * K4, K4)])?;
        assert!(rec.tiled(5 * K4, 7 * K4, K4));
        assert!(!rec.tiled(0x800, 0x1800, K4)); // not on a leaf boundary
        Ok(())
    }

    #[test]
    fn forget_splits_at_both_edges() -> Result {
        let mut rec = record(&[run(0, 16 * K4, K4)])?;
        forget(&mut rec, 4 * K4, 8 * K4)?;
        assert_eq!(rec.runs(), &[run(0, 4 * K4, K4), run(8 * K4, 8 * K4, K4)]);
        assert!(!rec.overlaps(4 * K4, 8 * K4));
        assert!(rec.tiled(0, 4 * K4, K4) && rec.tiled(8 * K4, 16 * K4, K4));
        Ok(())
    }

    #[test]
    fn forget_trims_runs_across_each_edge() -> Result {
        let mut rec = record(&[run(0, 8 * K4, K4), run(8 * K4, 8 * K4, K4)])?;
        forget(&mut rec, 4 * K4, 12 * K4)?;
        assert_eq!(rec.runs(), &[run(0, 4 * K4, K4), run(12 * K4, 4 * K4, K4)]);
        Ok(())
    }

    #[test]
    fn forget_whole_runs() -> Result {
        let mut rec = record(&[run(0, K4, K4), run(K4, K4, K4), run(2 * K4, M2, K4)])?;
        forget(&mut rec, 0, 2 * K4)?;
        assert_eq!(rec.runs(), &[run(2 * K4, M2, K4)]);
        forget(&mut rec, 2 * K4, 2 * K4 + M2)?;
        assert!(rec.runs().is_empty());
        forget(&mut rec, 0, G1)?; // nothing left to forget
        assert!(rec.runs().is_empty());
        Ok(())
    }

    #[test]
    fn forget_leaves_neighbours_alone() -> Result {
        let mut rec = record(&[run(0, K4, K4), run(K4, K4, K4), run(2 * K4, K4, K4)])?;
        forget(&mut rec, K4, 2 * K4)?;
        assert_eq!(rec.runs(), &[run(0, K4, K4), run(2 * K4, K4, K4)]);
        Ok(())
    }

    #[test]
    fn overlap_edges() -> Result {
        assert!(!overlaps(0, K4, K4, 2 * K4)); // adjacent
        assert!(!overlaps(K4, 2 * K4, 0, K4));
        assert!(overlaps(0, K4 + 1, K4, 2 * K4));
        assert!(overlaps(K4, 2 * K4, 0, K4 + 1));
        assert!(overlaps(0, 4 * K4, K4, 2 * K4)); // contains
        let rec = record(&[run(M2, M2, M2)])?;
        assert!(!rec.overlaps(0, M2) && !rec.overlaps(2 * M2, 3 * M2));
        assert!(rec.overlaps(M2 - K4, M2 + K4) && rec.overlaps(2 * M2 - 1, 2 * M2));
        Ok(())
    }

    #[test]
    fn geometry_alignment() {
        assert_eq!(GEOMETRY.check_iova(0, K4, 1), Ok(K4));
        assert_eq!(GEOMETRY.check_iova(M2, M2, 3), Ok(3 * M2));
        let bitmap = Err((EINVAL, "pgsize not in the table's bitmap"));
        assert_eq!(GEOMETRY.check_iova(0, 0, 1), bitmap);
        assert_eq!(GEOMETRY.check_iova(0, 3 * K4, 1), bitmap);
        assert_eq!(GEOMETRY.check_iova(0, 2 * K4, 1), bitmap);
        assert_eq!(GEOMETRY.check_iova(0, K4, 0), Err((EINVAL, "pgcount is 0")));
        assert_eq!(
            GEOMETRY.check_iova(K4, M2, 1),
            Err((EINVAL, "iova not aligned to pgsize"))
        );
        assert_eq!(GEOMETRY.check_paddr(K4, K4, K4), Ok(()));
        assert_eq!(
            GEOMETRY.check_paddr(K4, M2, M2),
            Err((EINVAL, "paddr not aligned to pgsize"))
        );
    }

    #[test]
    fn geometry_overflow() {
        assert_eq!(
            GEOMETRY.check_iova(0, G1, u64::MAX),
            Err((ERANGE, "pgcount beyond what io-pgtable counts (INT_MAX)"))
        );
        assert_eq!(
            GEOMETRY.check_iova(K4, K4, 0xffff_ffff),
            Err((ERANGE, "pgcount beyond what io-pgtable counts (INT_MAX)"))
        );
        let huge = Geometry { ias: 48, oas: 48, pgsizes: 1 << 40 };
        assert_eq!(
            huge.check_iova(0, 1 << 40, i32::MAX as u64),
            Err((ERANGE, "size overflows"))
        );
        let top = u64::MAX - (K4 - 1); // aligned, but iova + size wraps
        assert_eq!(
            GEOMETRY.check_iova(top, K4, 2),
            Err((ERANGE, "iova range beyond ias"))
        );
        assert_eq!(
            GEOMETRY.check_paddr(top, K4, 2 * K4),
            Err((ERANGE, "paddr range beyond oas"))
        );
    }

    #[test]
    fn geometry_beyond_ias_and_oas() {
        let last = (1u64 << 48) - G1;
        assert_eq!(GEOMETRY.check_iova(last, G1, 1), Ok(G1)); // the last largest page fits
        assert_eq!(
            GEOMETRY.check_iova(last, G1, 2),
            Err((ERANGE, "iova range beyond ias"))
        );
        assert_eq!(
            GEOMETRY.check_iova(1 << 48, K4, 1),
            Err((ERANGE, "iova range beyond ias"))
        );
        assert_eq!(GEOMETRY.check_paddr((1 << 40) - K4, K4, K4), Ok(()));
        let beyond = Err((ERANGE, "paddr range beyond oas"));
        assert_eq!(GEOMETRY.check_paddr((1 << 40) - K4, K4, 2 * K4), beyond);
    }

    #[test]
    fn slots_cover_requests_in_flight() -> Result {
        // Two maps in flight at once: each one's run must fit without allocating.
        let mut rec = Record::new();
        let a = rec.reserve(1)?;
        let b = rec.reserve(1)?;
        assert!(rec.spare() >= 2);
        rec.insert(b, run(K4, K4, K4))?;
        assert!(rec.spare() >= 1);
        rec.insert(a, run(0, K4, K4))?;
        assert_eq!(rec.reserved, 0);
        // An unmap that splits a run holds a slot for the right-hand piece.
        let mut rec = record(&[run(0, 16 * K4, K4)])?;
        assert_eq!(rec.forget_slots(4 * K4), 1);
        assert_eq!(rec.forget_slots(0), 0);
        let slots = rec.reserve(1)?;
        let other = rec.reserve(1)?;
        let spare = rec.spare();
        rec.forget(slots, 4 * K4, 8 * K4)?;
        assert_eq!(rec.spare(), spare - 1);
        assert!(rec.spare() >= rec.reserved);
        rec.release(other);
        assert_eq!(rec.reserved, 0);
        Ok(())
    }

    #[test]
    fn forget_without_enough_slots_still_splits() -> Result {
        // Slots taken for a different start than the one forgotten: `forget` finds room itself.
        let mut rec = record(&[run(0, 16 * K4, K4)])?;
        let slots = rec.reserve(0)?;
        rec.forget(slots, 4 * K4, 8 * K4)?;
        assert_eq!(rec.runs(), &[run(0, 4 * K4, K4), run(8 * K4, 8 * K4, K4)]);
        Ok(())
    }

    #[test]
    fn runs_are_bounded() -> Result {
        let mut rec = Record::new();
        for i in 0..MAX_RUNS as u64 {
            let slots = rec.reserve(1)?;
            rec.insert(slots, run(2 * i * K4, K4, K4))?;
        }
        assert_eq!(rec.reserve(1).err(), Some(ENOSPC));
        let none = rec.reserve(0)?;
        rec.release(none);
        // A split would need a run more: refused, and the record is unchanged.
        let slots = rec.reserve(0)?;
        assert!(rec.forget(slots, K4 / 2, K4 / 2 + 1).is_err());
        assert_eq!(rec.runs().len(), MAX_RUNS);
        forget(&mut rec, 0, K4)?; // a whole run: no split, fine
        assert_eq!(rec.runs().len(), MAX_RUNS - 1);
        Ok(())
    }

    #[test]
    fn spans_cover_what_io_pgtable_touches() {
        assert_eq!(span(0x1000, K4, 2), (0x1000, 0x3000));
        assert_eq!(span(0x1234, K4, 1), (0x1000, 0x3000)); // unaligned: whole leaves
        assert_eq!(span(0x1000, M2, 1), (0, 2 * M2));
        assert_eq!(span(0x1000, 3 * K4, 1), (0, 0x4000)); // not a power of two: the next one
        assert_eq!(span(0, 0, 5), (0, 0));
        assert_eq!(span(K4, K4, u64::MAX), (K4, u64::MAX)); // size overflows
        assert_eq!(span(u64::MAX - 5, K4, 1), (u64::MAX - (K4 - 1), u64::MAX)); // end wraps
        assert_eq!(span(5, 1 << 63 | 1, 1), (0, u64::MAX)); // no power of two that large
    }

    #[test]
    fn ids_never_wrap_into_a_live_one() {
        assert_eq!(next_id(0, 0, |_| false), Some(1));
        assert_eq!(next_id(7, 1, |_| false), Some(8));
        assert_eq!(next_id(u32::MAX, 2, |id| id == 1), Some(2)); // wraps, skips 0 and live 1
        assert_eq!(next_id(u32::MAX - 1, 3, |id| id == u32::MAX || id <= 2), Some(3));
        assert_eq!(next_id(4, 2, |id| (5..=7).contains(&id)), None); // more taken than `live`
    }

    #[test]
    fn nonsense_mapped_is_not_believed() {
        assert!(believable(0, K4, Some(4 * K4), 4 * K4));
        assert!(believable(0, K4, Some(4 * K4), 2 * K4)); // a short success
        assert!(believable(0, K4, Some(4 * K4), 0));
        assert!(!believable(0, K4, Some(4 * K4), 5 * K4)); // more than asked for
        assert!(!believable(K4, K4, Some(K4), 0xffff_ffff_ffff_f000)); // int -1 in io-pgtable
        assert!(!believable(0, K4, Some(4 * K4), K4 + 1)); // not whole leaves
        assert!(!believable(0, 0, Some(0), 0));
        assert!(!believable(0, K4, None, K4)); // the size asked for overflowed
        assert!(!believable(u64::MAX - K4 + 1, K4, Some(2 * K4), 2 * K4));
    }
}
