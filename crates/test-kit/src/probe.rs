//! Asking a topology's servers about their state, and waiting for a state.
//!
//! Why polling: a cluster converging, a replica promoted or a sentinel switching masters has no
//! event a client can subscribe to that covers every node at once; the state is read again every
//! [`POLL_EVERY`] until it holds or a deadline passes, and the failure message says what was
//! seen last (with `TEST_KIT_TRACE` set in the environment, every unmet look is printed too).

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Between two looks at a converging topology.
pub(crate) const POLL_EVERY: Duration = Duration::from_millis(25);
/// How long one connection attempt or one command to a node may take (a killed or paused node
/// must not stall a poll).
const COMMAND_TIMEOUT: Duration = Duration::from_millis(1000);

/// Calls `attempt` every [`POLL_EVERY`] until it returns `Ok` or `timeout` has passed; the error
/// names `what` and the last reason `attempt` gave.
pub(crate) fn poll_until<T>(
    what: &str,
    timeout: Duration,
    mut attempt: impl FnMut() -> Result<T, String>,
) -> Result<T, String> {
    let deadline = Instant::now() + timeout;
    loop {
        match attempt() {
            Ok(value) => return Ok(value),
            Err(reason) if Instant::now() >= deadline => {
                return Err(format!(
                    "{what}: not reached within {timeout:?}; last seen: {reason}"
                ));
            }
            Err(reason) => {
                if std::env::var_os("TEST_KIT_TRACE").is_some() {
                    eprintln!("{:?} {what}: {reason}", deadline - Instant::now());
                }
                std::thread::sleep(POLL_EVERY)
            }
        }
    }
}

/// A connection to `127.0.0.1:port` with short timeouts, authenticated with `password` if any.
pub(crate) fn connect(port: u16, password: Option<&str>) -> Result<redis::Connection, String> {
    let url = match password {
        Some(password) => format!("redis://:{password}@127.0.0.1:{port}"),
        None => format!("redis://127.0.0.1:{port}"),
    };
    let connection = redis::Client::open(url)
        .and_then(|client| client.get_connection_with_timeout(COMMAND_TIMEOUT))
        .and_then(|connection| {
            connection.set_read_timeout(Some(COMMAND_TIMEOUT))?;
            connection.set_write_timeout(Some(COMMAND_TIMEOUT))?;
            Ok(connection)
        });
    connection.map_err(|error| format!("127.0.0.1:{port}: {error}"))
}

/// Runs `command` on `connection`; the error names the port.
pub(crate) fn query<T: redis::FromRedisValue>(
    connection: &mut redis::Connection,
    port: u16,
    command: &redis::Cmd,
) -> Result<T, String> {
    command
        .query(connection)
        .map_err(|error| format!("127.0.0.1:{port}: {error}"))
}

/// The `key:value` lines of an INFO-like reply (CLUSTER INFO, INFO replication).
pub(crate) fn fields(text: &str) -> HashMap<&str, &str> {
    text.lines()
        .filter_map(|line| line.trim_end().split_once(':'))
        .collect()
}

/// What a data node says of itself in reply to ROLE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Role {
    /// `master`.
    Master,
    /// `slave`, following the master on `master_port`, `connected` when its link is up.
    Replica { master_port: u16, connected: bool },
    /// `sentinel` or anything else.
    Other(String),
}

/// Asks ROLE.
pub(crate) fn role(connection: &mut redis::Connection, port: u16) -> Result<Role, String> {
    let reply: Vec<redis::Value> = query(connection, port, &redis::cmd("ROLE"))?;
    let text = |value: Option<&redis::Value>| -> String {
        match value {
            Some(redis::Value::BulkString(bytes)) => String::from_utf8_lossy(bytes).into_owned(),
            Some(redis::Value::SimpleString(text)) => text.clone(),
            Some(redis::Value::Int(n)) => n.to_string(),
            _ => String::new(),
        }
    };
    match text(reply.first()).as_str() {
        "master" => Ok(Role::Master),
        "slave" => Ok(Role::Replica {
            master_port: text(reply.get(2)).parse().unwrap_or(0),
            connected: text(reply.get(3)) == "connected",
        }),
        other => Ok(Role::Other(other.to_string())),
    }
}
