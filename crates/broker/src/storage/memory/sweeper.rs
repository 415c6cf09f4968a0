//! The background sweeper: removes expired keys from the in-memory store so that their memory
//! goes back, whether or not anyone asks for them again.
//!
//! Why a thread of its own and not a Tokio task: the store is built outside any runtime as
//! often as inside one (tests, the demo, the server's start-up), and a sweep is CPU work that
//! should never occupy a runtime worker; the OS scheduler interleaves it with the request
//! threads. Why chunks: each lock acquisition covers at most `SWEEP_CHUNK` table slots and the
//! thread yields after a chunk that removed something, so a request waits at most a few
//! microseconds behind the sweeper even while a million keys expire. At the end of a shard's
//! pass, a table left mostly empty is shrunk and an arena mostly dead is compacted (its old
//! memory map unmapped): that is where the memory goes back to the OS.

use std::sync::Arc;
use std::sync::mpsc::{self, RecvTimeoutError, TryRecvError};
use std::time::Duration;

use super::shards::{Pass, Shards};

/// Stops the sweeper when dropped (with the store).
pub(super) struct SweeperHandle {
    _stop: mpsc::Sender<()>,
}

/// Starts the sweeper: a full pass over every shard every `interval`. `None` if the thread
/// could not be started (expired keys are then removed only when met by a request, or when the
/// store is full).
pub(super) fn start(shards: Arc<Shards>, interval: Duration) -> Option<SweeperHandle> {
    let (stop, stopped) = mpsc::channel();
    let spawned = std::thread::Builder::new()
        .name("tokenbroker-memory-sweeper".into())
        .spawn(move || run(&shards, &stopped, interval));
    match spawned {
        Ok(_) => Some(SweeperHandle { _stop: stop }),
        Err(e) => {
            tracing::warn!(error = %e, "in-memory store: cannot start the expiry sweeper");
            None
        }
    }
}

fn run(shards: &Shards, stopped: &mpsc::Receiver<()>, interval: Duration) {
    loop {
        match stopped.recv_timeout(interval) {
            Err(RecvTimeoutError::Timeout) => {}
            // The store is gone (its handle dropped) or asked us to stop.
            _ => return,
        }
        for shard in 0..shards.len() {
            if !matches!(stopped.try_recv(), Err(TryRecvError::Empty)) {
                return;
            }
            sweep_shard(shards, shard);
        }
    }
}

/// One pass over one shard, chunk by chunk.
pub(super) fn sweep_shard(shards: &Shards, shard: usize) {
    let mut pass = Pass::default();
    loop {
        let (done, removed) = shards.sweep_chunk(shard, &mut pass);
        if done {
            return;
        }
        if removed > 0 {
            std::thread::yield_now();
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::storage::StoreKey;
    use crate::storage::memory::record::Encoded;
    use crate::storage::memory::shards::{SWEEP_CHUNK, Shard, rehash, table_hash};

    /// Writes record `i` into shard 0 as the store does; `bound`: and lowers the shard's
    /// earliest expiry, as every write does.
    fn add(shards: &Shards, i: u32, expires: u32, bound: bool) {
        let mut guard = shards.lock(0);
        let key = StoreKey::new("s", format!("k{i}"));
        let record = Encoded::new(&key, "0:1#1", expires, i).unwrap();
        let Shard { table, arena, .. } = &mut *guard;
        let at = arena.append(table, &record).unwrap();
        table.insert_unique(table_hash(i), at, rehash(arena));
        if bound {
            guard.expires_at(expires);
        }
        assert!(shards.reserve());
    }

    #[test]
    fn a_pass_removes_only_expired_records_and_gives_their_memory_back() {
        let shards = Shards::new(1 << 20);
        for i in 0..2_000u32 {
            // Ten live records, the rest expired since second 0.
            add(&shards, i, if i < 10 { u32::MAX } else { 0 }, true);
        }
        let (slots, bytes) = {
            let shard = shards.lock(0);
            (shard.table.capacity(), shard.arena.capacity())
        };
        assert!(
            slots > 4 * SWEEP_CHUNK,
            "more slots than one chunk: {slots}"
        );
        sweep_shard(&shards, 0);
        let shard = shards.lock(0);
        assert_eq!(shard.table.len(), 10);
        assert_eq!(shards.count(), 10);
        assert!(
            shard.table.capacity() <= 64,
            "table not shrunk: {}",
            shard.table.capacity()
        );
        assert!(
            shard.arena.capacity() < bytes / 8,
            "arena not compacted: {} of {bytes}",
            shard.arena.capacity()
        );
        for i in 0..10u32 {
            let key = StoreKey::new("s", format!("k{i}"));
            let at = shard
                .table
                .find(table_hash(i), |at| shard.arena.view(*at).tag() == i);
            assert!(shard.arena.view(*at.unwrap()).is_for(&key));
        }
    }

    /// A shard whose earliest record has not expired is not scanned: a record slipped in
    /// expired without lowering the shard's bound stays until the bound says to look.
    #[test]
    fn a_shard_with_nothing_due_is_skipped() {
        let shards = Shards::new(1 << 20);
        add(&shards, 0, u32::MAX - 1, true);
        sweep_shard(&shards, 0); // learns: nothing due before u32::MAX - 1
        add(&shards, 1, 0, false);
        sweep_shard(&shards, 0);
        assert_eq!(shards.count(), 2, "scanned although nothing was due");
        add(&shards, 2, 0, true);
        sweep_shard(&shards, 0);
        assert_eq!(shards.count(), 1, "records 1 and 2 expired, 0 kept");
    }
}
