//! What the pair asks of one instance: the reads, compare-and-sets, TTLs and scripts of its
//! write, read, copy and discard paths, and the instance's health as last seen.
//!
//! Why a trait: the pair's rules (fail over on a transient error and only then, copies coalesced
//! and dropped when the queue is full, repairs that never extend a token's life, the `primary`
//! read mode's recovery window) are the store's guarantees, and they should be testable on their
//! own, with failures injected at will, beside the fault tests on real Redis servers. The
//! [`RedisInstance`] is the one production implementation; the pair's tests use an in-memory
//! one (`fake`). Connections, breakers, batching and spans stay in the Redis instance: the pair
//! sees only outcomes, typed by [`InstanceError`].

use std::future::Future;
use std::time::Duration;

use super::error::InstanceError;
use super::instance::RedisInstance;
use super::script::MergeReply;

/// One instance of the pair, as the pair's logic uses it. Values are canonical session tokens;
/// every TTL is whole milliseconds (at least one). Each method's Redis command is named.
pub(crate) trait InstanceOps: Send + Sync + 'static {
    /// `primary` or `fallback`, for logs and error messages.
    fn name(&self) -> &'static str;

    /// Up or down as last observed.
    fn is_up(&self) -> bool;

    /// True once after each restart of the server that was noticed (it may have lost keys).
    fn take_restarted(&self) -> bool;

    /// Counts a put's compare-and-set lost to a concurrent writer.
    fn note_cas_conflict(&self);

    /// The raw value of `key` (`GET`, batched into `MGET` by the Redis instance).
    fn get(&self, key: &str) -> impl Future<Output = Result<Option<String>, InstanceError>> + Send;

    /// Creates `key` with `value` and a TTL only if it does not exist (`SET NX PX`); true when
    /// it did.
    fn set_if_absent(
        &self,
        key: &str,
        value: &str,
        ttl: Duration,
    ) -> impl Future<Output = Result<bool, InstanceError>> + Send;

    /// Stores `new` with a TTL only if `key` still holds `expected` (`put_if_unchanged.lua`);
    /// true when it did.
    fn put_if_unchanged(
        &self,
        key: &str,
        expected: &str,
        new: &str,
        ttl: Duration,
    ) -> impl Future<Output = Result<bool, InstanceError>> + Send;

    /// Sets the TTL of `key` (`PEXPIRE`); false when the key does not exist.
    fn pexpire(
        &self,
        key: &str,
        ttl: Duration,
    ) -> impl Future<Output = Result<bool, InstanceError>> + Send;

    /// Merges `token` into `key` and sets its TTL in one atomic step (`merge.lua`).
    fn merge(
        &self,
        key: &str,
        token: &str,
        ttl: Duration,
        max_segments: usize,
    ) -> impl Future<Output = Result<MergeReply, InstanceError>> + Send;

    /// Replaces `expected` with `new` keeping the TTL, or deletes the key when `new` is `None`
    /// (`compare_and_set.lua`); true when it did.
    fn compare_and_set(
        &self,
        key: &str,
        expected: &str,
        new: Option<&str>,
    ) -> impl Future<Output = Result<bool, InstanceError>> + Send;

    /// The remaining TTL of `key` (`PTTL`); `None` when it is gone or has no expiry.
    fn pttl(
        &self,
        key: &str,
    ) -> impl Future<Output = Result<Option<Duration>, InstanceError>> + Send;

    /// Sets `key` to `value` with a TTL (`SET PX`).
    fn set_px(
        &self,
        key: &str,
        value: &str,
        ttl: Duration,
    ) -> impl Future<Output = Result<(), InstanceError>> + Send;
}

impl InstanceOps for RedisInstance {
    fn name(&self) -> &'static str {
        RedisInstance::name(self)
    }

    fn is_up(&self) -> bool {
        RedisInstance::is_up(self)
    }

    fn take_restarted(&self) -> bool {
        RedisInstance::take_restarted(self)
    }

    fn note_cas_conflict(&self) {
        RedisInstance::note_cas_conflict(self)
    }

    fn get(&self, key: &str) -> impl Future<Output = Result<Option<String>, InstanceError>> + Send {
        RedisInstance::get(self, key)
    }

    fn set_if_absent(
        &self,
        key: &str,
        value: &str,
        ttl: Duration,
    ) -> impl Future<Output = Result<bool, InstanceError>> + Send {
        RedisInstance::set_if_absent(self, key, value, ttl)
    }

    fn put_if_unchanged(
        &self,
        key: &str,
        expected: &str,
        new: &str,
        ttl: Duration,
    ) -> impl Future<Output = Result<bool, InstanceError>> + Send {
        RedisInstance::put_if_unchanged(self, key, expected, new, ttl)
    }

    fn pexpire(
        &self,
        key: &str,
        ttl: Duration,
    ) -> impl Future<Output = Result<bool, InstanceError>> + Send {
        RedisInstance::pexpire(self, key, ttl)
    }

    fn merge(
        &self,
        key: &str,
        token: &str,
        ttl: Duration,
        max_segments: usize,
    ) -> impl Future<Output = Result<MergeReply, InstanceError>> + Send {
        RedisInstance::merge(self, key, token, ttl, max_segments)
    }

    fn compare_and_set(
        &self,
        key: &str,
        expected: &str,
        new: Option<&str>,
    ) -> impl Future<Output = Result<bool, InstanceError>> + Send {
        RedisInstance::compare_and_set(self, key, expected, new)
    }

    fn pttl(
        &self,
        key: &str,
    ) -> impl Future<Output = Result<Option<Duration>, InstanceError>> + Send {
        RedisInstance::pttl(self, key)
    }

    fn set_px(
        &self,
        key: &str,
        value: &str,
        ttl: Duration,
    ) -> impl Future<Output = Result<(), InstanceError>> + Send {
        RedisInstance::set_px(self, key, value, ttl)
    }
}
