//! The connection an instance's commands run on, whatever the topology behind it: one
//! multiplexed connection to a standalone Redis or to the master that Sentinel names
//! (`redis+sentinel://`), or redis-rs's cluster connection to a Redis Cluster
//! (`redis+cluster://`), and the clients that open them.
//!
//! Why redis-rs's cluster client rather than our own routing: it discovers the topology from the
//! seeds, follows MOVED and ASK, refreshes the slot map and splits a multi-key MGET by slot;
//! every step the store makes atomic is on one key, and each key is one hash tag, so nothing of
//! the store's needs more than what it routes. Why a check of the server's mode: a standalone URL
//! pointed at a cluster node would write the keys of that node's slots and fail the others with
//! MOVED; the broker refuses the node instead, with a message naming the setting.

use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::sentinel::{SentinelClient, SentinelClientBuilder, SentinelServerType};
use redis::{Cmd, IntoConnectionInfo, Pipeline, RedisFuture, Value};

use super::error::Role;
use super::options::{RedisOptions, RedisUrl};

/// A handle to run commands on; cheap to clone (both kinds multiplex).
#[derive(Clone)]
pub enum RedisConnection {
    /// A standalone Redis.
    Single(MultiplexedConnection),
    /// A Redis Cluster.
    Cluster(ClusterConnection),
}

impl ConnectionLike for RedisConnection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            RedisConnection::Single(c) => c.req_packed_command(cmd),
            RedisConnection::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            RedisConnection::Single(c) => c.req_packed_commands(cmd, offset, count),
            RedisConnection::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            RedisConnection::Single(c) => c.get_db(),
            RedisConnection::Cluster(c) => c.get_db(),
        }
    }
}

/// The setting an instance's URL comes from, for error messages.
pub(super) fn setting(role: Role) -> &'static str {
    match role {
        Role::Primary => "redis.primary_url",
        Role::Fallback => "redis.fallback_url",
    }
}

/// The cluster client of a `redis+cluster://` URL: its seeds, credentials, TLS files,
/// deadlines and TCP_NODELAY. Connects nothing yet.
pub(super) fn cluster_client(
    role: Role,
    url: &RedisUrl,
    options: &RedisOptions,
) -> Result<ClusterClient, String> {
    let context = |e: &dyn std::fmt::Display| format!("{}: {url}: {e}", setting(role));
    let mut builder = ClusterClient::builder(url.cluster_seeds())
        .connection_timeout(options.connect_timeout)
        .response_timeout(options.operation_timeout)
        .tcp_settings(redis::io::tcp::TcpSettings::default().set_nodelay(true))
        // A put must not wait out a failover inside one call: the store's deadline and
        // breaker decide, and the fallback takes the put meanwhile.
        .retries(2);
    if url.is_tls() {
        builder = builder.tls(redis::TlsMode::Secure);
        if let Some(certificates) = super::tls::load(options).map_err(|e| context(&e))? {
            builder = builder.certs(certificates);
        }
    }
    builder.build().map_err(|e| context(&e))
}

/// The Sentinel client of a `redis+sentinel://` URL: its sentinels, the master's name, the
/// credentials (for the sentinels and the master alike), TLS files and TCP_NODELAY. Asks
/// nothing yet.
pub(super) fn sentinel_client(
    role: Role,
    url: &RedisUrl,
    options: &RedisOptions,
) -> Result<SentinelClient, String> {
    let context = |e: &dyn std::fmt::Display| format!("{}: {url}: {e}", setting(role));
    let master = url
        .sentinel_master()
        .ok_or_else(|| context(&"names no master"))?;
    let sentinels = url
        .sentinel_nodes()
        .iter()
        .map(|node| node.as_str().into_connection_info())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| context(&e))?;
    let auth = sentinels
        .first()
        .map(|s| s.redis_settings().clone())
        .unwrap_or_default();
    let nodelay = redis::io::tcp::TcpSettings::default().set_nodelay(true);
    let mut builder = SentinelClientBuilder::new(
        sentinels.iter().map(|s| s.addr().clone()),
        master,
        SentinelServerType::Master,
    )
    .map_err(|e| context(&e))?
    .set_client_to_redis_tcp_settings(nodelay.clone())
    .set_client_to_sentinel_tcp_settings(nodelay);
    if let Some(user) = auth.username() {
        builder = builder
            .set_client_to_redis_username(user)
            .set_client_to_sentinel_username(user);
    }
    if let Some(password) = auth.password() {
        builder = builder
            .set_client_to_redis_password(password)
            .set_client_to_sentinel_password(password);
    }
    if url.is_tls() {
        builder = builder
            .set_client_to_redis_tls_mode(redis::TlsMode::Secure)
            .set_client_to_sentinel_tls_mode(redis::TlsMode::Secure);
        if let Some(certificates) = super::tls::load(options).map_err(|e| context(&e))? {
            builder = builder
                .set_client_to_redis_certificates(certificates.clone())
                .set_client_to_sentinel_certificates(certificates);
        }
    }
    builder.build().map_err(|e| context(&e))
}

/// The explanation of a failed master lookup: a URL that reaches no sentinel says so.
pub(super) fn sentinel_error(role: Role, e: &redis::RedisError) -> String {
    let text = e.to_string();
    let not_a_sentinel = ["does not point to a sentinel", "unknown command"];
    if not_a_sentinel.iter().any(|p| text.contains(p)) {
        format!(
            "{} is a redis+sentinel:// URL, but no sentinel answered as one ({text})",
            setting(role)
        )
    } else {
        text
    }
}

/// The explanation of a failed cluster connection: a seed that is not a cluster node says so.
pub(super) fn cluster_connect_error(role: Role, e: &redis::RedisError) -> String {
    let text = e.to_string();
    if text.contains("cluster support disabled") {
        format!(
            "{} is a redis+cluster:// URL, but the server is not a Redis Cluster node \
             (cluster support disabled): use redis:// for a standalone Redis",
            setting(role)
        )
    } else {
        text
    }
}

/// Checks the `redis_mode` a standalone server reports in `INFO server`: a cluster node or a
/// Sentinel under a `redis://` URL is refused, with the setting named.
pub(super) fn check_standalone_mode(role: Role, info: &str) -> Result<(), String> {
    let mode = info
        .lines()
        .find_map(|l| l.strip_prefix("redis_mode:"))
        .map(str::trim);
    match mode {
        Some("cluster") => Err(format!(
            "{} points at a Redis Cluster node: use redis+cluster://host:port,... so that every \
             slot is reached (refusing to write to one node)",
            setting(role)
        )),
        Some("sentinel") => Err(format!(
            "{} points at a Redis Sentinel, not at a Redis server",
            setting(role)
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cluster_node_or_a_sentinel_under_a_standalone_url_is_refused_naming_the_setting() {
        let err =
            check_standalone_mode(Role::Primary, "# Server\r\nredis_mode:cluster\r\n").unwrap_err();
        assert!(err.contains("redis.primary_url") && err.contains("redis+cluster://"));
        let err = check_standalone_mode(Role::Fallback, "redis_mode:sentinel\r\n").unwrap_err();
        assert!(err.contains("redis.fallback_url"));
        assert!(check_standalone_mode(Role::Primary, "redis_mode:standalone\r\n").is_ok());
    }
}
