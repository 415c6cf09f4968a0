//! A shard's records, packed one after the other in one anonymous memory map.
//!
//! Why not one heap allocation per key: measured, glibc's malloc keeps the memory of a million
//! freed small blocks resident (they sit in its free lists, under the blocks still live), so
//! expired keys never gave memory back to the OS without `malloc_trim`, which needs `unsafe`
//! this workspace forbids. A map of our own is returned whole when it is dropped (`munmap`),
//! whatever the allocator. Packing also drops the allocator's per-block header and rounding,
//! and pages of the map not yet written are not resident.
//!
//! How: records are appended; a removed or replaced record's bytes are counted dead. When a
//! record does not fit, or the sweeper finds at least half the bytes dead, the live records are
//! copied into a new map sized for them with room to grow (twice the live bytes) and the old map
//! is dropped; the table's offsets are rewritten in the same pass. All of it
//! runs under the shard's lock, over one shard's records only (about a thousand keys, a few
//! tens of microseconds).

use std::io;

use hashbrown::HashTable;
use memmap2::{Advice, MmapMut, MmapOptions};

use super::record::{Encoded, View, read_u32};
use crate::storage::StoreError;

const PAGE: usize = 4096;

/// A shard's table: where each record starts in the arena.
pub(super) type Table = HashTable<u32>;

#[derive(Default)]
pub(super) struct Arena {
    map: Option<MmapMut>,
    /// Bytes written from the start of the map.
    used: usize,
    /// Bytes of removed or replaced records among `used`.
    dead: usize,
}

fn round_to_pages(bytes: usize) -> usize {
    bytes.div_ceil(PAGE).max(1) * PAGE
}

fn map(len: usize) -> io::Result<MmapMut> {
    let map = MmapOptions::new().len(len).map_anon()?;
    // Transparent huge pages would make a 4 KiB record page cost 2 MiB; advisory only.
    let _ = map.advise(Advice::NoHugePage);
    Ok(map)
}

fn unavailable(e: io::Error) -> StoreError {
    StoreError::Unavailable(format!("in-memory store: cannot map memory: {e}"))
}

/// The record starting at `at` in `bytes` (empty when `at` is wrong).
fn record(bytes: &[u8], at: u32) -> &[u8] {
    let at = at as usize;
    let len = read_u32(bytes, at) as usize;
    bytes.get(at..at + len).unwrap_or_default()
}

impl Arena {
    fn bytes(&self) -> &[u8] {
        self.map.as_deref().unwrap_or_default()
    }

    pub(super) fn capacity(&self) -> usize {
        self.bytes().len()
    }

    pub(super) fn live(&self) -> usize {
        self.used - self.dead
    }

    pub(super) fn view(&self, at: u32) -> View<'_> {
        View(record(self.bytes(), at))
    }

    /// The record at `at` was removed from the table: its bytes are dead.
    pub(super) fn forget(&mut self, at: u32) {
        self.dead += self.view(at).len();
    }

    /// Appends a record, rebuilding the arena first when it does not fit; returns where it
    /// starts. The offsets in `table` are rewritten if the arena is rebuilt.
    pub(super) fn append(
        &mut self,
        table: &mut Table,
        record: &Encoded<'_>,
    ) -> Result<u32, StoreError> {
        let len = record.len();
        if self.used + len > self.capacity() {
            let want = round_to_pages(2 * (self.live() + len));
            self.rebuild(table, want).map_err(unavailable)?;
        }
        let at = self.used;
        let Some(out) = self
            .map
            .as_deref_mut()
            .and_then(|m| m.get_mut(at..at + len))
        else {
            return Err(StoreError::Unavailable(
                "in-memory store: arena too small after growing".into(),
            ));
        };
        record.write_to(out);
        self.used += len;
        u32::try_from(at)
            .map_err(|_| StoreError::Unavailable("in-memory store: shard over 4 GiB".into()))
    }

    /// Replaces the record at `at` (same key): in place when the new one is as long (the usual
    /// case: LSNs advance without gaining a digit), otherwise appended, the old one dead.
    /// Returns where the record now starts.
    pub(super) fn replace(
        &mut self,
        table: &mut Table,
        at: u32,
        record: &Encoded<'_>,
    ) -> Result<u32, StoreError> {
        let old_len = self.view(at).len();
        if old_len == record.len() {
            let start = at as usize;
            if let Some(out) = self
                .map
                .as_deref_mut()
                .and_then(|m| m.get_mut(start..start + old_len))
            {
                record.write_to(out);
                return Ok(at);
            }
        }
        // If the append rebuilds the arena, the old record (still in the table) is copied too;
        // either way its `old_len` bytes are dead once the table points at the new one.
        let new_at = self.append(table, record)?;
        self.dead += old_len;
        Ok(new_at)
    }

    /// After a sweep: when at least half of the written bytes are dead, copies the live records
    /// into a map twice their size (none when nothing is live), giving the rest back.
    pub(super) fn compact_if_sparse(&mut self, table: &mut Table) -> io::Result<()> {
        if self.dead == 0 || self.dead < self.live() {
            return Ok(());
        }
        let want = if self.live() == 0 {
            0
        } else {
            round_to_pages(2 * self.live())
        };
        self.rebuild(table, want)
    }

    /// Copies every record `table` points to into a new map of `capacity` bytes (no map when
    /// 0), in table order, and points the table at the copies. On error nothing changed.
    fn rebuild(&mut self, table: &mut Table, capacity: usize) -> io::Result<()> {
        let old = self.bytes();
        let mut total = 0usize;
        for at in table.iter() {
            match record(old, *at).len() {
                0 => return Err(io::Error::other("arena and table disagree")),
                len => total += len,
            }
        }
        if total > capacity || u32::try_from(capacity).is_err() {
            return Err(io::Error::other("shard over 4 GiB"));
        }
        let mut fresh = if capacity == 0 {
            None
        } else {
            Some(map(capacity)?)
        };
        let mut used = 0usize;
        if let Some(new) = fresh.as_deref_mut() {
            for at in table.iter_mut() {
                let src = record(old, *at);
                if let Some(dst) = new.get_mut(used..used + src.len()) {
                    dst.copy_from_slice(src);
                }
                // Checked above: `used` stays under `capacity`, which fits a u32.
                *at = used as u32;
                used += src.len();
            }
        }
        self.map = fresh;
        self.used = used;
        self.dead = 0;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::storage::StoreKey;

    fn key(i: u32) -> StoreKey {
        StoreKey::new("s", format!("k{i}"))
    }

    fn find(arena: &Arena, table: &Table, i: u32) -> u32 {
        *table
            .find(u64::from(i), |at| arena.view(*at).tag() == i)
            .unwrap()
    }

    fn token_of(arena: &Arena, table: &Table, i: u32) -> String {
        let view = arena.view(find(arena, table, i));
        assert!(view.is_for(&key(i)));
        view.token().unwrap().to_string()
    }

    #[test]
    fn records_survive_growth_replacement_and_compaction() {
        let (mut arena, mut table) = (Arena::default(), Table::new());
        for i in 0..1_000u32 {
            let (k, token) = (key(i), format!("0:1#{}", 1_000 + i));
            let at = arena
                .append(&mut table, &Encoded::new(&k, &token, 0, i).unwrap())
                .unwrap();
            table.insert_unique(u64::from(i), at, |a| u64::from(arena.view(*a).tag()));
        }
        assert!(arena.capacity() >= arena.live() && arena.dead == 0);
        // Same length: in place. Longer: a new record, the old one dead.
        let (k7, at) = (key(7), find(&arena, &table, 7));
        let same = arena
            .replace(
                &mut table,
                at,
                &Encoded::new(&k7, "0:1#9999", 5, 7).unwrap(),
            )
            .unwrap();
        assert_eq!((same, arena.dead), (at, 0));
        assert_eq!(arena.view(at).expires(), 5);
        let longer = "0:1#10000,1:2#5";
        let moved = arena
            .replace(&mut table, at, &Encoded::new(&k7, longer, 5, 7).unwrap())
            .unwrap();
        *table.find_mut(7, |a| *a == at).unwrap() = moved;
        assert_eq!(arena.dead, 20 + 3 + "0:1#9999".len());
        assert_eq!(token_of(&arena, &table, 7), longer);
        // Remove most records: the sweeper's compaction keeps the rest, in a smaller map.
        let before = arena.capacity();
        let gone: Vec<u32> = table.extract_if(|a| arena.view(*a).tag() >= 10).collect();
        gone.into_iter().for_each(|at| arena.forget(at));
        arena.compact_if_sparse(&mut table).unwrap();
        assert!(
            arena.capacity() < before / 4,
            "{} of {before}",
            arena.capacity()
        );
        assert_eq!(arena.dead, 0);
        for i in (0..10).filter(|i| *i != 7) {
            assert_eq!(token_of(&arena, &table, i), format!("0:1#{}", 1_000 + i));
        }
        assert_eq!(token_of(&arena, &table, 7), longer);
        // Nothing live: no map at all.
        let gone: Vec<u32> = table.extract_if(|_| true).collect();
        gone.into_iter().for_each(|at| arena.forget(at));
        arena.compact_if_sparse(&mut table).unwrap();
        assert_eq!(arena.capacity(), 0);
    }
}
