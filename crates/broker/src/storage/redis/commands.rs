//! The commands the store sends to one instance: reads (batched), the merge and
//! compare-and-set scripts, TTLs.
//!
//! Why apart from the connection handling (`instance`): each command is a few lines on top of
//! `call` (breaker, deadline, span, counters); listing them together shows everything the
//! broker asks of Redis, which is what the ACL rule in docs/redis.md must allow.

use std::sync::Arc;
use std::time::Duration;

use redis::Value;
use tokio::sync::oneshot;

use super::connection::RedisConnection;
use super::error::InstanceError;
use super::instance::{MAX_BATCH, PendingGet, RedisInstance};
use super::metrics::InstanceEvent;
use super::replica_ack::Write;
use super::script::{
    COMPARE_AND_SET_SCRIPT, MERGE_SCRIPT, MergeReply, PUT_IF_UNCHANGED_SCRIPT, decode,
};

impl RedisInstance {
    /// Runs the merge script on `key`.
    pub async fn merge(
        &self,
        key: &str,
        token: &str,
        ttl: Duration,
        max_segments: usize,
    ) -> Result<MergeReply, InstanceError> {
        let ttl_ms = ttl.as_millis().max(1) as u64;
        let write = Write::script(&MERGE_SCRIPT, key)
            .arg(token)
            .arg(ttl_ms)
            .arg(max_segments);
        self.call("EVALSHA", |mut conn| async move {
            let (reply, acks) = self.write::<Value>(&mut conn, &write).await?;
            let reply = decode(&reply).map_err(|e| InstanceError::Reply(self.name(), e))?;
            if matches!(reply, MergeReply::Merged { .. }) {
                self.acknowledged(acks)?;
            }
            Ok(reply)
        })
        .await
    }

    /// Stores `new` with a TTL of `ttl` only if `key` still holds `expected`; true when it did.
    pub async fn put_if_unchanged(
        &self,
        key: &str,
        expected: &str,
        new: &str,
        ttl: Duration,
    ) -> Result<bool, InstanceError> {
        let ttl_ms = ttl.as_millis().max(1) as u64;
        let write = Write::script(&PUT_IF_UNCHANGED_SCRIPT, key)
            .arg(expected)
            .arg(new)
            .arg(ttl_ms);
        self.call("EVALSHA", |mut conn| async move {
            let (stored, acks) = self.write::<i64>(&mut conn, &write).await?;
            if stored == 1 {
                self.acknowledged(acks)?;
            }
            Ok(stored == 1)
        })
        .await
    }

    /// Stores `value` with a TTL only if `key` does not exist (`SET NX PX`); true when it did.
    pub async fn set_if_absent(
        &self,
        key: &str,
        value: &str,
        ttl: Duration,
    ) -> Result<bool, InstanceError> {
        let ttl_ms = ttl.as_millis().max(1) as u64;
        let mut cmd = redis::cmd("SET");
        cmd.arg(key).arg(value).arg("NX").arg("PX").arg(ttl_ms);
        let write = Write::command(cmd);
        self.call("SET", |mut conn| async move {
            let (reply, acks) = self.write::<Option<String>>(&mut conn, &write).await?;
            if reply.is_some() {
                self.acknowledged(acks)?;
            }
            Ok(reply.is_some())
        })
        .await
    }

    /// Sets the TTL of `key`; false when the key does not exist (any more).
    pub async fn pexpire(&self, key: &str, ttl: Duration) -> Result<bool, InstanceError> {
        let ttl_ms = ttl.as_millis().max(1) as u64;
        let mut cmd = redis::cmd("PEXPIRE");
        cmd.arg(key).arg(ttl_ms);
        let write = Write::command(cmd);
        self.call("PEXPIRE", |mut conn| async move {
            let (set, acks) = self.write::<i64>(&mut conn, &write).await?;
            if set == 1 {
                self.acknowledged(acks)?;
            }
            Ok(set == 1)
        })
        .await
    }

    /// A put lost a compare-and-set to a concurrent writer (counted for the metrics).
    pub(crate) fn note_cas_conflict(&self) {
        self.count(InstanceEvent::CasConflict);
    }

    /// Replaces the value of `key` with `new` (deleting it when `None`), keeping its TTL, only
    /// if it still holds `expected`; true when it did. One atomic step (a three-line script).
    pub async fn compare_and_set(
        &self,
        key: &str,
        expected: &str,
        new: Option<&str>,
    ) -> Result<bool, InstanceError> {
        self.call("EVALSHA", |mut conn| async move {
            let swapped: i64 = COMPARE_AND_SET_SCRIPT
                .key(key)
                .arg(expected)
                .arg(new.unwrap_or(""))
                .invoke_async(&mut conn)
                .await
                .map_err(|e| self.redis_error(e))?;
            Ok(swapped == 1)
        })
        .await
    }

    /// Reads a raw stored value. Concurrent reads are batched into one MGET (see
    /// `spawn_get_batchers`); the caller's span `MGET` covers the wait for the batch.
    pub async fn get(&self, key: &str) -> Result<Option<String>, InstanceError> {
        let (reply, answer) = oneshot::channel();
        let wait = async {
            self.batches
                .send((key.to_owned(), reply))
                .await
                .map_err(|_| InstanceError::Redis(self.name(), "read batcher stopped".into()))?;
            answer
                .await
                .map_err(|_| InstanceError::Redis(self.name(), "read batcher stopped".into()))?
        };
        let deadline = async {
            match tokio::time::timeout(self.operation_timeout, wait).await {
                Ok(result) => result,
                Err(_) => Err(InstanceError::Timeout(self.name(), self.operation_timeout)),
            }
        };
        self.traced("MGET", deadline).await
    }

    /// Reads several keys in one command.
    pub async fn mget(&self, keys: Vec<String>) -> Result<Vec<Option<String>>, InstanceError> {
        self.traced("MGET", self.mget_untraced(keys)).await
    }

    pub(super) async fn mget_untraced(
        &self,
        keys: Vec<String>,
    ) -> Result<Vec<Option<String>>, InstanceError> {
        self.call_untraced(|mut conn| async move {
            if let RedisConnection::Cluster(_) = conn {
                // On a cluster, one GET per key, sent at once (each node's connection pipelines
                // them): the keys of a batch are on many slots, and redis-rs's split of a
                // multi-slot MGET miscounts its replies while the slot map changes (measured:
                // "Mismatch in the number of multi-slot results" during a failover).
                let gets = keys.iter().map(|key| {
                    let mut conn = conn.clone();
                    async move {
                        redis::cmd("GET")
                            .arg(key)
                            .query_async::<Option<String>>(&mut conn)
                            .await
                    }
                });
                return futures_util::future::try_join_all(gets)
                    .await
                    .map_err(|e| self.redis_error(e));
            }
            let mut cmd = redis::cmd("MGET");
            for key in &keys {
                cmd.arg(key);
            }
            cmd.query_async::<Vec<Option<String>>>(&mut conn)
                .await
                .map_err(|e| self.redis_error(e))
        })
        .await
    }

    /// The remaining time to live of a key; `None` when it has no expiry or is gone.
    pub async fn pttl(&self, key: &str) -> Result<Option<Duration>, InstanceError> {
        self.call("PTTL", |mut conn| async move {
            let pttl: i64 = redis::cmd("PTTL")
                .arg(key)
                .query_async(&mut conn)
                .await
                .map_err(|e| self.redis_error(e))?;
            Ok(u64::try_from(pttl).ok().map(Duration::from_millis))
        })
        .await
    }

    /// Sets a key with a TTL (used for the primary-behind marker).
    pub async fn set_px(&self, key: &str, value: &str, ttl: Duration) -> Result<(), InstanceError> {
        let ttl_ms = ttl.as_millis().max(1) as u64;
        self.call("SET", |mut conn| async move {
            redis::cmd("SET")
                .arg(key)
                .arg(value)
                .arg("PX")
                .arg(ttl_ms)
                .query_async::<()>(&mut conn)
                .await
                .map_err(|e| self.redis_error(e))
        })
        .await
    }
}

/// Starts the read batchers of `instance`, one per connection: each takes every read queued
/// while its previous MGET was in flight and sends them as one MGET. Under load, batches grow by
/// themselves (fewer commands and syscalls per read); when idle, a read goes out at once.
pub fn spawn_get_batchers(instance: &Arc<RedisInstance>) -> Vec<tokio::task::JoinHandle<()>> {
    let queue = instance.batch_queue.clone();
    (0..instance.slots.len())
        .map(|_| {
            let (instance, queue) = (instance.clone(), queue.clone());
            tokio::spawn(async move {
                let mut pending: Vec<PendingGet> = Vec::with_capacity(MAX_BATCH);
                loop {
                    pending.clear();
                    if queue.lock().await.recv_many(&mut pending, MAX_BATCH).await == 0 {
                        return;
                    }
                    let keys = pending.iter().map(|(k, _)| k.clone()).collect();
                    match instance.mget_untraced(keys).await {
                        Ok(values) => {
                            for ((_, reply), value) in pending.drain(..).zip(values) {
                                let _ = reply.send(Ok(value));
                            }
                        }
                        Err(e) => {
                            for (_, reply) in pending.drain(..) {
                                let _ = reply.send(Err(e.clone()));
                            }
                        }
                    }
                }
            })
        })
        .collect()
}
