// SPDX-License-Identifier: GPL-2.0

//! The table registry: every table this module created, by id, with its geometry, its mapping
//! record and the ranges that have a request in flight.
//!
//! The registry sits behind one lock, which a request drops around its io-pgtable call; the
//! busy ranges keep other checked requests out of a range while that call runs.

use crate::record::{overlaps, Geometry, Record, Refusal, Slots};
use kernel::{
    alloc::AllocError,
    prelude::*,
    sync::Arc,
};

/// At most this many tables at once.
const MAX_TABLES: usize = 256;

/// A page table; shared so that a request can use it without holding the registry lock.
pub(crate) struct Table {
    pub(crate) pgt: crate::shim::Pgtable,
}

/// One table of the registry.
pub(crate) struct Entry {
    pub(crate) id: u32,
    pub(crate) table: Arc<Table>,
    pub(crate) geometry: Geometry,
    pub(crate) record: Record,
    /// Ranges `[start, end)` with a request in flight.
    busy: KVec<(u64, u64)>,
}

/// A range taken by one request for the time of its io-pgtable call, with the record slots it
/// may spend afterwards. Hand it back with [`Entry::finish`].
#[must_use]
pub(crate) struct InFlight {
    start: u64,
    end: u64,
    slots: Slots,
}

impl Entry {
    /// True if a request in flight overlaps `[start, end)`.
    pub(crate) fn busy(&self, start: u64, end: u64) -> bool {
        self.busy.iter().any(|&(a, b)| overlaps(start, end, a, b))
    }

    /// Takes `[start, end)` and room in the record for `runs` more runs.
    pub(crate) fn begin(
        &mut self,
        start: u64,
        end: u64,
        runs: usize,
    ) -> Result<InFlight, AllocError> {
        let slots = self.record.reserve(runs)?;
        if let Err(e) = self.busy.push((start, end), GFP_KERNEL) {
            self.record.release(slots);
            return Err(e);
        }
        Ok(InFlight { start, end, slots })
    }

    /// Gives the range back; returns the record slots for the request to spend.
    pub(crate) fn finish(&mut self, op: InFlight) -> Slots {
        let mut found = false;
        self.busy.retain(|&mut r| {
            let this = !found && r == (op.start, op.end);
            found |= this;
            !this
        });
        op.slots
    }
}

/// Every table, by id.
pub(crate) struct Registry {
    next_id: u32,
    tables: KVec<Entry>,
}

impl Registry {
    pub(crate) const fn new() -> Self {
        Registry {
            next_id: 1,
            tables: KVec::new(),
        }
    }

    pub(crate) fn get(&self, id: u64) -> Option<&Entry> {
        self.tables.iter().find(|t| u64::from(t.id) == id)
    }

    pub(crate) fn get_mut(&mut self, id: u64) -> Option<&mut Entry> {
        self.tables.iter_mut().find(|t| u64::from(t.id) == id)
    }

    pub(crate) fn ids(&self) -> impl Iterator<Item = u32> + '_ {
        self.tables.iter().map(|t| t.id)
    }

    pub(crate) fn full(&self) -> bool {
        self.tables.len() >= MAX_TABLES
    }

    /// Adds a table under the next id.
    pub(crate) fn add(
        &mut self,
        table: Arc<Table>,
        geometry: Geometry,
    ) -> Result<&Entry, AllocError> {
        let entry = Entry {
            id: self.next_id,
            table,
            geometry,
            record: Record::new(),
            busy: KVec::new(),
        };
        self.tables.push(entry, GFP_KERNEL)?;
        self.next_id += 1;
        self.tables.last().ok_or(AllocError)
    }

    /// Takes a table out of the registry, unless a request is in flight on it.
    pub(crate) fn remove(&mut self, id: u64) -> Result<Entry, Refusal> {
        const NO_SUCH: Refusal = (ENOENT, "no such table");
        let pos = self
            .tables
            .iter()
            .position(|t| u64::from(t.id) == id)
            .ok_or(NO_SUCH)?;
        if !self.tables[pos].busy.is_empty() {
            return Err((EBUSY, "operation in flight"));
        }
        self.tables.remove(pos).map_err(|_| NO_SUCH)
    }
}
