// SPDX-License-Identifier: GPL-2.0

//! The table registry: every table this module created, by id, with its geometry, its mapping
//! record and the ranges that have a request in flight.
//!
//! The registry sits behind one lock, which a request drops around its io-pgtable call; the
//! busy ranges keep every other request (checked, `_unchecked` or `iova_to_phys`) out of a
//! range while that call runs. Each busy entry carries the token of the request that took it,
//! and only that request's [`InFlight`] removes it.

use crate::record::{overlaps, Geometry, Record, Refusal, Slots};
use kernel::{alloc::AllocError, prelude::*, sync::Arc};

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
    /// Ranges `[start, end)` with a request in flight, with the token of that request.
    busy: KVec<Busy>,
    /// The token of the next request in flight (a 64-bit count never wraps in practice, and a
    /// token only has to differ from the tokens of requests still in flight).
    next_token: u64,
}

#[derive(Clone, Copy)]
struct Busy {
    token: u64,
    start: u64,
    end: u64,
}

/// A range taken by one request for the time of its io-pgtable call, with the record slots it
/// may spend afterwards. Hand it back with [`Entry::finish`].
#[must_use]
pub(crate) struct InFlight {
    token: u64,
    slots: Slots,
}

impl Entry {
    /// True if a request in flight overlaps `[start, end)`.
    pub(crate) fn busy(&self, start: u64, end: u64) -> bool {
        self.busy.iter().any(|b| overlaps(start, end, b.start, b.end))
    }

    /// Takes `[start, end)` and room in the record for `runs` more runs: `ENOSPC` if the record
    /// is full, `ENOMEM` if memory is.
    pub(crate) fn begin(&mut self, start: u64, end: u64, runs: usize) -> Result<InFlight> {
        let slots = self.record.reserve(runs)?;
        let token = self.next_token;
        if let Err(e) = self.busy.push(Busy { token, start, end }, GFP_KERNEL) {
            self.record.release(slots);
            return Err(e.into());
        }
        self.next_token = self.next_token.wrapping_add(1);
        Ok(InFlight { token, slots })
    }

    /// Gives the request's own range back; returns the record slots for it to spend.
    pub(crate) fn finish(&mut self, op: InFlight) -> Slots {
        self.busy.retain(|b| b.token != op.token);
        op.slots
    }
}

/// Every table, by id.
pub(crate) struct Registry {
    /// The id given last.
    last_id: u32,
    tables: KVec<Entry>,
}

impl Registry {
    pub(crate) const fn new() -> Self {
        Registry {
            last_id: 0,
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

    /// Adds a table under the next free id (ids wrap at `u32::MAX`, skipping 0 and live ids).
    pub(crate) fn add(
        &mut self,
        table: Arc<Table>,
        geometry: Geometry,
    ) -> Result<&Entry, AllocError> {
        let tables = &self.tables;
        let id = crate::record::next_id(self.last_id, tables.len(), |id| {
            tables.iter().any(|t| t.id == id)
        })
        .ok_or(AllocError)?;
        let entry = Entry {
            id,
            table,
            geometry,
            record: Record::new(),
            busy: KVec::new(),
            next_token: 0,
        };
        self.tables.push(entry, GFP_KERNEL)?;
        self.last_id = id;
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
