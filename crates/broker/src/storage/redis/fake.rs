//! An in-memory instance for the pair's tests: a map of values with expiries, and failures,
//! holds and restarts injected by the test.
//!
//! Why not a mock: it keeps values and TTLs and applies each command's meaning (compare-and-set,
//! NX, the merge), so the tests assert on what the pair leaves stored, not on calls expected.
//! The merge is [`SessionToken::merge`], the rule `merge.lua` mirrors (checked against it on
//! real Redis by the `lua_merge` tests). Behaviour against real servers stays with the Redis
//! suites; this is for the pair's own rules with failures a real server cannot be made to give
//! on cue.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use session_token::SessionToken;
use tokio::sync::watch;

use super::error::InstanceError;
use super::ops::InstanceOps;
use super::script::MergeReply;

/// One in-memory instance.
pub(super) struct FakeInstance {
    name: &'static str,
    values: Mutex<HashMap<String, (String, Instant)>>,
    /// Every call fails with this error while it is set.
    failure: Mutex<Option<InstanceError>>,
    /// Calls wait while this is false.
    open: watch::Sender<bool>,
    /// Calls waiting on [`Self::hold`].
    waiting: watch::Sender<usize>,
    up: watch::Sender<bool>,
    restarted: AtomicBool,
    /// Reads made (each compare-and-set step begins with one).
    pub(super) reads: AtomicU64,
    pub(super) cas_conflicts: AtomicU64,
}

impl FakeInstance {
    pub(super) fn new(name: &'static str) -> Self {
        Self {
            name,
            values: Mutex::default(),
            failure: Mutex::default(),
            open: watch::Sender::new(true),
            waiting: watch::Sender::new(0),
            up: watch::Sender::new(true),
            restarted: AtomicBool::new(false),
            reads: AtomicU64::new(0),
            cas_conflicts: AtomicU64::new(0),
        }
    }

    /// Makes every call fail with `error` (`None`: serve again).
    pub(super) fn fail_with(&self, error: Option<InstanceError>) {
        *self.lock_failure() = error;
    }

    /// A transient failure, as a Redis that cannot be reached gives.
    pub(super) fn down_error(&self) -> InstanceError {
        InstanceError::Redis(self.name, "connection refused".into())
    }

    /// Holds every call until [`Self::release`].
    pub(super) fn hold(&self) {
        self.open.send_replace(false);
    }

    pub(super) fn release(&self) {
        self.open.send_replace(true);
    }

    /// Waits until `n` calls are held.
    pub(super) async fn held(&self, n: usize) {
        let mut waiting = self.waiting.subscribe();
        let _ = waiting.wait_for(|w| *w >= n).await;
    }

    /// Forgets every value and reports a restart, as a Redis without persistence does.
    pub(super) fn restart(&self) {
        self.lock_values().clear();
        self.restarted.store(true, Ordering::Release);
    }

    /// The live value of `key`, read without the failure, the hold or the counters.
    pub(super) fn value(&self, key: &str) -> Option<String> {
        self.live(&self.lock_values(), key)
    }

    /// The remaining TTL of `key`, read as [`Self::value`].
    pub(super) fn ttl(&self, key: &str) -> Option<Duration> {
        let values = self.lock_values();
        let (_, expires) = values.get(key)?;
        expires.checked_duration_since(Instant::now())
    }

    /// Stores `value` under `key` with `ttl` directly.
    pub(super) fn insert(&self, key: &str, value: &str, ttl: Duration) {
        self.lock_values()
            .insert(key.to_owned(), (value.to_owned(), Instant::now() + ttl));
    }

    fn lock_values(&self) -> std::sync::MutexGuard<'_, HashMap<String, (String, Instant)>> {
        self.values.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lock_failure(&self) -> std::sync::MutexGuard<'_, Option<InstanceError>> {
        self.failure.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn live(&self, values: &HashMap<String, (String, Instant)>, key: &str) -> Option<String> {
        values
            .get(key)
            .filter(|(_, expires)| *expires > Instant::now())
            .map(|(v, _)| v.clone())
    }

    /// The gate every call passes: the hold, then the injected failure.
    async fn enter(&self) -> Result<(), InstanceError> {
        let mut open = self.open.subscribe();
        if !*open.borrow() {
            self.waiting.send_modify(|w| *w += 1);
            let _ = open.wait_for(|o| *o).await;
            self.waiting.send_modify(|w| *w -= 1);
        }
        match self.lock_failure().clone() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

impl InstanceOps for FakeInstance {
    fn name(&self) -> &'static str {
        self.name
    }

    fn is_up(&self) -> bool {
        *self.up.borrow()
    }

    fn take_restarted(&self) -> bool {
        self.restarted.swap(false, Ordering::AcqRel)
    }

    fn note_cas_conflict(&self) {
        self.cas_conflicts.fetch_add(1, Ordering::Relaxed);
    }

    async fn get(&self, key: &str) -> Result<Option<String>, InstanceError> {
        self.enter().await?;
        self.reads.fetch_add(1, Ordering::Relaxed);
        Ok(self.value(key))
    }

    async fn set_if_absent(
        &self,
        key: &str,
        value: &str,
        ttl: Duration,
    ) -> Result<bool, InstanceError> {
        self.enter().await?;
        let mut values = self.lock_values();
        if self.live(&values, key).is_some() {
            return Ok(false);
        }
        values.insert(key.to_owned(), (value.to_owned(), Instant::now() + ttl));
        Ok(true)
    }

    async fn put_if_unchanged(
        &self,
        key: &str,
        expected: &str,
        new: &str,
        ttl: Duration,
    ) -> Result<bool, InstanceError> {
        self.enter().await?;
        let mut values = self.lock_values();
        if self.live(&values, key).as_deref() != Some(expected) {
            return Ok(false);
        }
        values.insert(key.to_owned(), (new.to_owned(), Instant::now() + ttl));
        Ok(true)
    }

    async fn pexpire(&self, key: &str, ttl: Duration) -> Result<bool, InstanceError> {
        self.enter().await?;
        let mut values = self.lock_values();
        if self.live(&values, key).is_none() {
            return Ok(false);
        }
        if let Some((_, expires)) = values.get_mut(key) {
            *expires = Instant::now() + ttl;
        }
        Ok(true)
    }

    async fn merge(
        &self,
        key: &str,
        token: &str,
        ttl: Duration,
        max_segments: usize,
    ) -> Result<MergeReply, InstanceError> {
        self.enter().await?;
        let Ok(token) = SessionToken::parse(token) else {
            return Ok(MergeReply::BadInput);
        };
        let mut values = self.lock_values();
        let stored = self.live(&values, key);
        let parsed = stored.as_deref().map(SessionToken::parse);
        let merged = match &parsed {
            Some(Ok(stored)) => match stored.merge(&token) {
                Ok(merged) => merged,
                Err(conflict) => return Ok(MergeReply::Conflict(conflict)),
            },
            Some(Err(_)) | None => token,
        };
        if merged.len() > max_segments {
            return Ok(MergeReply::TooManySegments(merged.len()));
        }
        values.insert(key.to_owned(), (merged.to_string(), Instant::now() + ttl));
        Ok(MergeReply::Merged {
            token: merged,
            replaced_corrupt: matches!(parsed, Some(Err(_))),
        })
    }

    async fn compare_and_set(
        &self,
        key: &str,
        expected: &str,
        new: Option<&str>,
    ) -> Result<bool, InstanceError> {
        self.enter().await?;
        let mut values = self.lock_values();
        if self.live(&values, key).as_deref() != Some(expected) {
            return Ok(false);
        }
        match new {
            Some(new) => {
                if let Some((value, _)) = values.get_mut(key) {
                    *value = new.to_owned();
                }
            }
            None => {
                values.remove(key);
            }
        }
        Ok(true)
    }

    async fn pttl(&self, key: &str) -> Result<Option<Duration>, InstanceError> {
        self.enter().await?;
        Ok(self.ttl(key))
    }

    async fn set_px(&self, key: &str, value: &str, ttl: Duration) -> Result<(), InstanceError> {
        self.enter().await?;
        self.insert(key, value, ttl);
        Ok(())
    }
}
