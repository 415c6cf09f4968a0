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
//! is dropped; the table's slots are rewritten to the new offsets in the same pass. All of it
//! runs under the shard's lock, over one shard's records only (about a thousand keys, a few
//! tens of microseconds).

use std::io;

use hashbrown::HashTable;
use memmap2::{Advice, MmapMut, MmapOptions};

use super::record::{Encoded, Slot, View};
use crate::storage::StoreError;

const PAGE: usize = 4096;

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

impl Arena {
    pub(super) fn capacity(&self) -> usize {
        self.map.as_ref().map_or(0, |m| m.len())
    }

    pub(super) fn live(&self) -> usize {
        self.used - self.dead
    }

    fn span(slot: &Slot) -> std::ops::Range<usize> {
        slot.at as usize..slot.at as usize + slot.len as usize
    }

    pub(super) fn view(&self, slot: &Slot) -> View<'_> {
        View(
            self.map
                .as_deref()
                .and_then(|m| m.get(Self::span(slot)))
                .unwrap_or_default(),
        )
    }

    /// The record of a slot that was removed or replaced is dead.
    pub(super) fn forget(&mut self, slot: &Slot) {
        self.dead += slot.len as usize;
    }

    /// Appends a record, rebuilding the arena first when it does not fit; returns its slot
    /// position `(at, len)`. The slots of `table` are rewritten if the arena is rebuilt.
    pub(super) fn append(
        &mut self,
        table: &mut HashTable<Slot>,
        record: &Encoded<'_>,
    ) -> Result<(u32, u32), StoreError> {
        let len = record.len() as usize;
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
        let at = u32::try_from(at)
            .map_err(|_| StoreError::Unavailable("in-memory store: shard over 4 GiB".into()))?;
        Ok((at, record.len()))
    }

    /// Replaces the token of `slot`'s record: in place when the new text is as long as the old
    /// (the usual case: LSNs advance without gaining a digit), otherwise as a new record, the
    /// old one dead. Returns the record's position `(at, len)`.
    pub(super) fn replace_token(
        &mut self,
        table: &mut HashTable<Slot>,
        slot: &Slot,
        record: &Encoded<'_>,
        token: &str,
    ) -> Result<(u32, u32), StoreError> {
        if record.len() == slot.len {
            let start = self.view(slot).token_start();
            let span = Self::span(slot);
            if let Some(old) = self
                .map
                .as_deref_mut()
                .and_then(|m| m.get_mut(span.start + start..span.end))
                && old.len() == token.len()
            {
                old.copy_from_slice(token.as_bytes());
                return Ok((slot.at, slot.len));
            }
        }
        let position = self.append(table, record)?;
        self.forget(slot);
        Ok(position)
    }

    /// After a sweep: when at least half of the written bytes are dead, copies the live records
    /// into a map twice their size (none when nothing is live), giving the rest back.
    pub(super) fn compact_if_sparse(&mut self, table: &mut HashTable<Slot>) -> io::Result<()> {
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
    /// 0), in table order, and points the slots at the copies. On error nothing changed.
    fn rebuild(&mut self, table: &mut HashTable<Slot>, capacity: usize) -> io::Result<()> {
        let total: usize = table.iter().map(|s| s.len as usize).sum();
        let broken = || io::Error::other("arena and table disagree");
        if total > capacity || u32::try_from(capacity).is_err() {
            return Err(io::Error::other("shard over 4 GiB"));
        }
        let old = self.map.as_deref().unwrap_or_default();
        if table.iter().any(|s| old.get(Self::span(s)).is_none()) {
            return Err(broken());
        }
        let mut fresh = if capacity == 0 {
            None
        } else {
            Some(map(capacity)?)
        };
        let mut at = 0usize;
        if let Some(new) = fresh.as_deref_mut() {
            for slot in table.iter_mut() {
                let len = slot.len as usize;
                if let (Some(src), Some(dst)) =
                    (old.get(Self::span(slot)), new.get_mut(at..at + len))
                {
                    dst.copy_from_slice(src);
                }
                // Checked above: `at` stays under `capacity`, which fits a u32.
                slot.at = at as u32;
                at += len;
            }
        }
        self.map = fresh;
        self.used = at;
        self.dead = 0;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::storage::StoreKey;

    fn put(arena: &mut Arena, table: &mut HashTable<Slot>, i: u32, token: &str) -> Slot {
        let key = StoreKey::new("s", format!("k{i}"));
        let (at, len) = arena
            .append(table, &Encoded::new(&key, token).unwrap())
            .unwrap();
        let slot = Slot {
            at,
            len,
            expires: 0,
            tag: i,
        };
        table.insert_unique(u64::from(i), slot, |s| u64::from(s.tag));
        slot
    }

    fn token_of(arena: &Arena, table: &HashTable<Slot>, i: u32) -> String {
        let slot = table.find(u64::from(i), |s| s.tag == i).unwrap();
        assert!(
            arena
                .view(slot)
                .is_for(&StoreKey::new("s", format!("k{i}")))
        );
        arena.view(slot).token().unwrap().to_string()
    }

    #[test]
    fn records_survive_growth_replacement_and_compaction() {
        let (mut arena, mut table) = (Arena::default(), HashTable::new());
        for i in 0..1_000 {
            put(&mut arena, &mut table, i, &format!("0:1#{}", 1_000 + i));
        }
        assert!(arena.capacity() >= arena.live() && arena.dead == 0);
        // Same length: in place. Longer: a new record, the old one dead.
        let slot = *table.find(7, |s| s.tag == 7).unwrap();
        let key = StoreKey::new("s", "k7");
        let same = arena
            .replace_token(
                &mut table,
                &slot,
                &Encoded::new(&key, "0:1#9999").unwrap(),
                "0:1#9999",
            )
            .unwrap();
        assert_eq!(same, (slot.at, slot.len));
        assert_eq!(arena.dead, 0);
        let longer = "0:1#10000,1:2#5";
        let moved = arena
            .replace_token(
                &mut table,
                &slot,
                &Encoded::new(&key, longer).unwrap(),
                longer,
            )
            .unwrap();
        let s = table.find_mut(7, |s| s.tag == 7).unwrap();
        (s.at, s.len) = moved;
        assert_eq!(arena.dead, slot.len as usize);
        assert_eq!(token_of(&arena, &table, 7), longer);
        // Remove most records: the sweeper's compaction keeps the rest, in a smaller map.
        let before = arena.capacity();
        for removed in table.extract_if(|s| s.tag >= 10) {
            arena.forget(&removed);
        }
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
        for removed in table.extract_if(|_| true) {
            arena.forget(&removed);
        }
        arena.compact_if_sparse(&mut table).unwrap();
        assert_eq!(arena.capacity(), 0);
    }
}
