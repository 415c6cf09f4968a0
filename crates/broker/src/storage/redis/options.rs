//! Redis settings: URLs (with passwords kept out of logs), TLS files, timeouts, pool and queue
//! sizes; and the connection settings they make (`connection_info`).

use std::path::PathBuf;
use std::time::Duration;

use redis::io::tcp::TcpSettings;
use redis::{ConnectionInfo, IntoConnectionInfo};
use serde::{Deserialize, Deserializer};

use super::error::Role;
use super::tls;
pub use super::url::RedisUrl;

fn optional_url<'de, D: Deserializer<'de>>(d: D) -> Result<Option<RedisUrl>, D::Error> {
    let s = Option::<String>::deserialize(d)?;
    match s.as_deref().map(str::trim) {
        None | Some("") => Ok(None),
        Some(url) => RedisUrl::parse(url)
            .map(Some)
            .map_err(serde::de::Error::custom),
    }
}

/// An optional file path; an empty value (as an environment variable can only unset a key by
/// being empty) means unset.
fn optional_path<'de, D: Deserializer<'de>>(d: D) -> Result<Option<PathBuf>, D::Error> {
    let s = Option::<String>::deserialize(d)?;
    Ok(s.filter(|s| !s.trim().is_empty()).map(PathBuf::from))
}

/// How GetToken reads a primary/fallback pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReadMode {
    /// Read both, merge. Sees every acknowledged put, whichever instance took it.
    Merge,
    /// Read the primary; the fallback only on error, and during a recovery window after the
    /// primary missed writes. One read instead of two.
    Primary,
}

/// Redis store settings (`redis.*`).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RedisOptions {
    /// The primary instance. Unset: the broker uses the in-memory store.
    #[serde(deserialize_with = "optional_url")]
    pub primary_url: Option<RedisUrl>,
    /// The fallback instance (optional).
    #[serde(deserialize_with = "optional_url")]
    pub fallback_url: Option<RedisUrl>,
    /// PEM CA bundle that verifies the servers of `rediss://` URLs, instead of the system roots.
    #[serde(deserialize_with = "optional_path")]
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate (chain) for Redis servers that require one (mutual TLS).
    #[serde(deserialize_with = "optional_path")]
    pub client_cert_file: Option<PathBuf>,
    /// PEM private key of `client_cert_file`. Read at start-up, never logged.
    #[serde(deserialize_with = "optional_path")]
    pub client_key_file: Option<PathBuf>,
    /// How GetToken reads the pair; `merge` by default.
    pub read_mode: ReadMode,
    /// First part of every key (`<namespace>:v1:...`).
    pub namespace: String,
    /// Connections per instance. Each is multiplexed: concurrent calls are pipelined on it.
    pub pool_size: usize,
    /// Deadline to open a connection, and to wait for one from the pool (500 ms by default).
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Deadline of one Redis call.
    #[serde(with = "humantime_serde")]
    pub operation_timeout: Duration,
    /// Consecutive failures that open an instance's circuit breaker.
    pub breaker_failures: u32,
    /// How long an open breaker skips the instance before letting one call probe it.
    #[serde(with = "humantime_serde")]
    pub breaker_open_for: Duration,
    /// How often each instance is pinged (drives health, readiness and breaker recovery).
    #[serde(with = "humantime_serde")]
    pub health_interval: Duration,
    /// Capacity of the copy queue: copies to the fallback, read repairs to the primary and the
    /// discards ordered after them. Copies past it are dropped (and counted); the caller is
    /// never blocked. Its earlier name, `fallback_queue_capacity`, is still read.
    #[serde(alias = "fallback_queue_capacity")]
    pub copy_queue_capacity: usize,
    /// Most queued copies applied at once (concurrently, pipelined). Its earlier name,
    /// `fallback_batch`, is still read.
    #[serde(alias = "fallback_batch")]
    pub copy_batch: usize,
    /// Replicas of the primary that must hold a put before it is acknowledged (Redis `WAIT`
    /// pipelined after the write, on the same connection: on a cluster, to the master of the
    /// key's slot); 0 (the default) acknowledges once the master has it. A put the fallback
    /// takes (the primary failed, or its replicas did not ack in time) is acknowledged once the
    /// fallback has it.
    pub min_replica_acks: u32,
    /// How long a put waits for `min_replica_acks` replicas; without them in time the
    /// instance's put fails as unavailable (so the fallback takes it). Below
    /// `redis.operation_timeout`. 100 ms by default.
    #[serde(with = "humantime_serde")]
    pub replica_ack_timeout: Duration,
}

impl Default for RedisOptions {
    fn default() -> Self {
        Self {
            primary_url: None,
            fallback_url: None,
            ca_file: None,
            client_cert_file: None,
            client_key_file: None,
            read_mode: ReadMode::Merge,
            namespace: "tb".into(),
            pool_size: 4,
            connect_timeout: Duration::from_millis(500),
            operation_timeout: Duration::from_millis(250),
            breaker_failures: 3,
            breaker_open_for: Duration::from_secs(1),
            health_interval: Duration::from_millis(500),
            copy_queue_capacity: 10_000,
            copy_batch: 64,
            min_replica_acks: 0,
            replica_ack_timeout: Duration::from_millis(100),
        }
    }
}

impl RedisOptions {
    /// Checks the settings together: a fallback needs a primary and must differ from it, the
    /// namespace is non-empty without spaces or braces, counts are at least 1 and durations more
    /// than 0. The error names the key at fault (`redis.pool_size must be at least 1`).
    pub fn validate(&self) -> Result<(), String> {
        if self.primary_url.is_none() && self.fallback_url.is_some() {
            return Err("redis.fallback_url is set but redis.primary_url is not".into());
        }
        if self.primary_url.is_some() && self.primary_url == self.fallback_url {
            return Err("redis.fallback_url must differ from redis.primary_url".into());
        }
        if self.namespace.is_empty() || self.namespace.contains(['{', '}', ' ']) {
            return Err("redis.namespace must be non-empty, without spaces or braces".into());
        }
        let positive = [
            ("redis.pool_size", self.pool_size),
            ("redis.breaker_failures", self.breaker_failures as usize),
            ("redis.copy_queue_capacity", self.copy_queue_capacity),
            ("redis.copy_batch", self.copy_batch),
        ];
        if let Some((name, _)) = positive.iter().find(|(_, v)| *v == 0) {
            return Err(format!("{name} must be at least 1"));
        }
        let durations = [
            ("redis.connect_timeout", self.connect_timeout),
            ("redis.operation_timeout", self.operation_timeout),
            ("redis.breaker_open_for", self.breaker_open_for),
            ("redis.health_interval", self.health_interval),
        ];
        if let Some((name, _)) = durations.iter().find(|(_, d)| d.is_zero()) {
            return Err(format!("{name} must be more than 0"));
        }
        if let Some((name, _)) = durations
            .iter()
            .find(|(_, d)| *d > Duration::from_secs(3600))
        {
            return Err(format!("{name} must be at most 1h"));
        }
        if self.min_replica_acks > 0
            && (self.replica_ack_timeout.is_zero()
                || self.replica_ack_timeout >= self.operation_timeout)
        {
            return Err(
                "redis.replica_ack_timeout must be more than 0 and less than \
                        redis.operation_timeout"
                    .into(),
            );
        }
        super::tls::load(self).map_err(|e| e.to_string())?;
        Ok(())
    }
}

/// How to reach `url`: its address and credentials, TCP_NODELAY, the TLS files for a
/// `rediss://` URL, and no `CLIENT SETINFO` on connect.
pub(super) fn connection_info(
    role: Role,
    url: &RedisUrl,
    options: &RedisOptions,
) -> Result<ConnectionInfo, String> {
    let context = |e: &dyn std::fmt::Display| format!("redis {}: {url}: {e}", role.as_str());
    let mut info = url
        .expose()
        .into_connection_info()
        .map_err(|e| context(&e))?;
    if url.is_tls()
        && let Some(certificates) = tls::load(options).map_err(|e| context(&e))?
    {
        // Parsed already by `tls::load`, so this cannot fail on the files' contents; its error
        // is not printed in full all the same, as it could quote the key file.
        info = redis::Client::build_with_tls(info, certificates)
            .map_err(|e| context(&format!("the TLS files were refused ({:?})", e.kind())))?
            .get_connection_info()
            .clone();
    }
    // redis-rs leaves Nagle's algorithm on by default; with many commands multiplexed on
    // one connection it holds each small write back until the previous one is acknowledged.
    //
    // redis-rs also labels each connection with `CLIENT SETINFO` (its library name and
    // version). The broker does not send it: a Redis user restricted to what the broker needs
    // (docs/redis.md) would be denied it on Redis 7.2+ (an ACL LOG entry per connection), and
    // allowing it needs a rule that Redis 7.0 refuses (the subcommand is unknown there). The
    // connection's ACL user already names the broker in `CLIENT LIST`.
    let redis_settings = info.redis_settings().clone().set_skip_set_lib_name();
    Ok(info
        .set_redis_settings(redis_settings)
        .set_tcp_settings(TcpSettings::default().set_nodelay(true)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_acks(primary: &str, timeout: Duration) -> RedisOptions {
        RedisOptions {
            primary_url: Some(RedisUrl::parse(primary).unwrap()),
            min_replica_acks: 1,
            replica_ack_timeout: timeout,
            ..RedisOptions::default()
        }
    }

    #[test]
    fn replica_acks_need_a_timeout_below_the_operation_timeout_on_any_topology() {
        assert!(
            with_acks("redis://h:1", Duration::from_millis(100))
                .validate()
                .is_ok()
        );
        let err = with_acks("redis://h:1", Duration::from_millis(250))
            .validate()
            .unwrap_err();
        assert!(err.contains("redis.replica_ack_timeout"), "{err}");
        assert!(
            with_acks("redis+cluster://h:1,h:2", Duration::from_millis(100))
                .validate()
                .is_ok()
        );
        assert!(
            with_acks("redis+sentinel://s:26379/m", Duration::from_millis(100))
                .validate()
                .is_ok()
        );
    }
}
