//! Redis settings: URLs (with passwords kept out of logs), TLS files, timeouts, pool and queue
//! sizes; and the connection settings they make (`connection_info`).

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use redis::io::tcp::TcpSettings;
use redis::{ConnectionInfo, IntoConnectionInfo};
use serde::{Deserialize, Deserializer};

use super::error::Role;
use super::tls;

/// A Redis URL: `redis://[user:password@]host:port[/db]` (`rediss://` for TLS) for a standalone
/// Redis, or `redis+cluster://[user:password@]host:port,host:port,...` (`rediss+cluster://`) for a
/// Redis Cluster, given by seed nodes from which the topology is discovered. Its Debug and
/// Display forms hide the password, so it can be logged.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisUrl(String);

impl RedisUrl {
    /// Checks that `url` is one of the forms above and that redis-rs can parse it (each seed of
    /// a cluster URL). The error quotes the URL with its password hidden.
    pub fn parse(url: &str) -> Result<Self, String> {
        let shown = || Self(url.to_owned());
        let scheme = url.split_once("://").map(|(s, _)| s);
        match scheme {
            Some("redis" | "rediss") => {
                redis::parse_redis_url(url)
                    .ok_or_else(|| format!("{} is not a valid Redis URL", shown()))?;
            }
            Some("redis+cluster" | "rediss+cluster") => {
                let candidate = Self(url.to_owned());
                let seeds = candidate.cluster_seeds();
                if seeds.iter().any(|s| s.ends_with("://") || s.ends_with('@')) {
                    return Err(format!("{} names an empty seed", shown()));
                }
                for seed in &seeds {
                    redis::parse_redis_url(seed)
                        .ok_or_else(|| format!("{} has a seed that is not host:port", shown()))?;
                }
            }
            _ => {
                return Err(format!(
                    "{} is not a redis://, rediss://, redis+cluster:// or rediss+cluster:// URL",
                    shown()
                ));
            }
        }
        Ok(Self(url.to_owned()))
    }

    /// The URL with its password; for connecting only, never for logs.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// True for `rediss://` and `rediss+cluster://`.
    pub fn is_tls(&self) -> bool {
        self.0.starts_with("rediss://") || self.0.starts_with("rediss+cluster://")
    }

    /// True for `redis+cluster://` and `rediss+cluster://`.
    pub fn is_cluster(&self) -> bool {
        self.0.starts_with("redis+cluster://") || self.0.starts_with("rediss+cluster://")
    }

    /// A cluster URL's seeds as standalone URLs (`redis://[user:password@]host:port`, with
    /// the credentials on each); empty for a standalone URL. For connecting only.
    pub fn cluster_seeds(&self) -> Vec<String> {
        let Some((scheme, rest)) = self.0.split_once("://") else {
            return Vec::new();
        };
        let scheme = match scheme {
            "redis+cluster" => "redis",
            "rediss+cluster" => "rediss",
            _ => return Vec::new(),
        };
        let rest = rest.trim_end_matches('/');
        let (userinfo, hosts) = match rest.rsplit_once('@') {
            Some((u, h)) => (format!("{u}@"), h),
            None => (String::new(), rest),
        };
        hosts
            .split(',')
            .map(|host| format!("{scheme}://{userinfo}{}", host.trim()))
            .collect()
    }

    fn redacted(&self) -> String {
        let Some((scheme, rest)) = self.0.split_once("://") else {
            return "<invalid url>".into();
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        match authority.rsplit_once('@') {
            Some((userinfo, host)) => {
                let user = userinfo.split_once(':').map_or(userinfo, |(u, _)| u);
                if userinfo.contains(':') {
                    format!("{scheme}://{user}:***@{host}{path}")
                } else {
                    format!("{scheme}://***@{host}{path}")
                }
            }
            None => self.0.clone(),
        }
    }
}

impl fmt::Display for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl fmt::Debug for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RedisUrl({})", self.redacted())
    }
}

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

    #[test]
    fn passwords_never_show() {
        for (url, shown) in [
            ("redis://:s3cret@h:6379/0", "redis://:***@h:6379/0"),
            ("rediss://app:s3cret@h:6380", "rediss://app:***@h:6380"),
            ("redis://s3cret@h", "redis://***@h"),
            ("redis://h:6379", "redis://h:6379"),
        ] {
            let u = RedisUrl::parse(url).unwrap();
            assert_eq!(u.to_string(), shown);
            assert!(!format!("{u:?}").contains("s3cret"));
        }
        let err = RedisUrl::parse("http://u:s3cret@h").unwrap_err();
        assert!(!err.contains("s3cret"), "{err}");
    }

    #[test]
    fn cluster_urls_give_their_seeds_with_the_credentials_and_hide_the_password() {
        let u = RedisUrl::parse("rediss+cluster://app:s3cret@a:7000,b:7001/").unwrap();
        assert!(u.is_cluster() && u.is_tls());
        assert_eq!(
            u.cluster_seeds(),
            ["rediss://app:s3cret@a:7000", "rediss://app:s3cret@b:7001"]
        );
        assert_eq!(u.to_string(), "rediss+cluster://app:***@a:7000,b:7001/");
        let plain = RedisUrl::parse("redis+cluster://127.0.0.1:7000").unwrap();
        assert!(plain.is_cluster() && !plain.is_tls());
        assert!(
            RedisUrl::parse("redis://h:1")
                .unwrap()
                .cluster_seeds()
                .is_empty()
        );
        for bad in [
            "redis+cluster://",
            "redis+cluster://a:1,,b:2",
            "redis+cluster://u:pw@",
        ] {
            let err = RedisUrl::parse(bad).unwrap_err();
            assert!(!err.contains("pw"), "{err}");
        }
    }
}
