//! A put's write on one instance and, with `redis.min_replica_acks` set, the `WAIT` that
//! acknowledges it: the write and `WAIT <acks> <timeout>` go out as one pipeline on one
//! connection, whatever the topology.
//!
//! Why one pipeline: `WAIT` counts the replicas that hold the last write *of its own
//! connection*, so it must follow the write on the connection that carried it. On a standalone
//! Redis or a Sentinel master that is the call's connection either way. On a Redis Cluster,
//! redis-rs routes a lone `WAIT` to every master (aggregating the smallest count), which blocks
//! every master's connection for each put and, after a redirect or a reconnection, counts on a
//! connection the write never went through. A pipeline is routed by its first command with a
//! key: the write and its `WAIT` reach the master of the key's slot together, on that node's
//! connection, and a MOVED or ASK reply to the write sends both on to the new owner (redis-rs
//! retries a pipeline whole). The cost: `WAIT` is sent even when the write changed nothing (a
//! compare-and-set that lost); its count is then ignored.
//!
//! Why a connection of their own on a cluster: a `WAIT` blocks its connection until the
//! replica answers, and a cluster instance has one connection per node, which its reads share
//! (each read batch waits for all its keys, on every master): a stopped replica stalled every
//! read of the instance behind the `WAIT`s of its master's puts (found by the test that stops a
//! replica under load). The writes that `WAIT` go through a second cluster connection instead.
//! A standalone or Sentinel instance keeps its writes on the call's connection (reads queue
//! behind a `WAIT` there, on `redis.pool_size` connections).

use redis::{Cmd, FromRedisValue, Script, ToRedisArgs};

use super::connection::RedisConnection;
use super::dial::Dialer;
use super::error::InstanceError;
use super::instance::RedisInstance;

/// A put's write: a command, or a script's `EVALSHA` (loaded on NOSCRIPT and sent again).
pub(super) struct Write {
    cmd: Cmd,
    script: Option<&'static Script>,
}

impl Write {
    /// A plain command.
    pub(super) fn command(cmd: Cmd) -> Self {
        Self { cmd, script: None }
    }

    /// `EVALSHA` of `script` on the one key `key`; its arguments follow with [`Self::arg`].
    pub(super) fn script(script: &'static Script, key: &str) -> Self {
        let mut cmd = redis::cmd("EVALSHA");
        cmd.arg(script.get_hash()).arg(1).arg(key);
        Self {
            cmd,
            script: Some(script),
        }
    }

    /// One more argument.
    pub(super) fn arg(mut self, arg: impl ToRedisArgs) -> Self {
        self.cmd.arg(arg);
        self
    }
}

/// How many replicas held a write when its `WAIT` returned; `None` when no acks are required.
#[must_use = "a write that changed something must be checked with `acknowledged`"]
pub(super) struct Acks(Option<i64>);

impl RedisInstance {
    /// Sends `write` on `conn` (followed by `WAIT` when acks are required); its reply, and the
    /// acks to check with [`Self::acknowledged`] if the write changed something.
    pub(super) async fn write<T: FromRedisValue>(
        &self,
        conn: &mut RedisConnection,
        write: &Write,
    ) -> Result<(T, Acks), InstanceError> {
        let mut own;
        let conn = match (&self.dialer, self.replica_acks) {
            (Dialer::Cluster(client, _, writes), Some(_)) => {
                own = self.cluster_connection(client, writes).await?;
                &mut own
            }
            _ => conn,
        };
        match self.send(conn, write).await {
            Err(e) if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) => {
                // Flushed or restarted since the connection pre-loaded it: load, send again.
                if let Some(script) = write.script {
                    script
                        .load_async(conn)
                        .await
                        .map_err(|e| self.redis_error(e))?;
                }
                self.send(conn, write).await
            }
            sent => sent,
        }
        .map_err(|e| self.redis_error(e))
    }

    async fn send<T: FromRedisValue>(
        &self,
        conn: &mut RedisConnection,
        write: &Write,
    ) -> redis::RedisResult<(T, Acks)> {
        let Some((wanted, timeout)) = self.replica_acks else {
            let reply = write.cmd.query_async(conn).await?;
            return Ok((reply, Acks(None)));
        };
        let mut pipe = redis::pipe();
        pipe.add_command(write.cmd.clone())
            .cmd("WAIT")
            .arg(wanted)
            .arg(timeout.as_millis().max(1) as u64);
        let (reply, acked): (T, i64) = pipe.query_async(conn).await?;
        Ok((reply, Acks(Some(acked))))
    }

    /// With `redis.min_replica_acks` set, a write that changed something is acknowledged only
    /// when its `WAIT` counted that many replicas within `redis.replica_ack_timeout`. Fewer: a
    /// transient error, so the put fails over to the fallback (the write stays on this master:
    /// a token only moves forward). `WAIT` blocks its connection meanwhile, so the commands
    /// multiplexed behind it (on a cluster: those to the same master) wait too.
    pub(super) fn acknowledged(&self, acks: Acks) -> Result<(), InstanceError> {
        let (Acks(Some(acked)), Some((wanted, timeout))) = (acks, self.replica_acks) else {
            return Ok(());
        };
        if acked < i64::from(wanted) {
            return Err(InstanceError::Redis(
                self.name(),
                format!(
                    "{acked} of the {wanted} replicas of redis.min_replica_acks held the put \
                     within {timeout:?}"
                ),
            ));
        }
        Ok(())
    }
}
