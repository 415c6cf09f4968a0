//! A broker process on the in-memory store, for the `memory` scenario: started on a free
//! loopback port, loaded with keys, read in open loop, its resident memory read.
//!
//! Why apart from `compare`'s broker: this one has no Redis, its own TTL and key bound, and the
//! scenario runs two of them side by side.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use test_kit::free_port;
use tokenbroker_proto::v1::PutTokenRequest;
use tokenbroker_proto::v1::token_broker_client::TokenBrokerClient;
use tokio::process::{Child, Command};
use tonic::transport::Channel;

use super::{PROBES, SHAPE};
use crate::compare::{connect, wait_ready};
use crate::load::Target;
use crate::procstat::status_kib;
use crate::workload::{Keys, Workload};

/// A broker on the in-memory store, on a free loopback port.
pub(super) struct Broker {
    _child: Child,
    pub(super) pid: u32,
    channels: Vec<Channel>,
}

impl Broker {
    pub(super) async fn start(
        bin: &PathBuf,
        ttl: Duration,
        max_keys: u64,
        conns: usize,
    ) -> Result<Self, String> {
        let port = free_port();
        let child = Command::new(bin)
            .arg("serve")
            .env("TOKENBROKER_LISTEN", format!("127.0.0.1:{port}"))
            .env("TOKENBROKER_METRICS__LISTEN", "")
            .env("TOKENBROKER_LOG__LEVEL", "error")
            .env(
                "TOKENBROKER_TOKEN__TTL",
                humantime::format_duration(ttl).to_string(),
            )
            .env("TOKENBROKER_MEMORY__MAX_KEYS", max_keys.to_string())
            .stdout(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
        let pid = child.id().unwrap_or(0);
        let channels = connect(port, conns).await?;
        wait_ready(&channels[0]).await?;
        Ok(Self {
            _child: child,
            pid,
            channels,
        })
    }

    pub(super) fn rss_kib(&self) -> u64 {
        status_kib(self.pid, "VmRSS:")
    }

    /// Open-loop GetToken on the probe keys of `scope`.
    pub(super) fn get_probes(&self, scope: &str) -> Arc<Target> {
        Arc::new(Target::Broker {
            channels: self.channels.clone(),
            workload: Workload {
                mix: [1, 0, 0],
                keys: Keys::Uniform(PROBES),
                segments: 2,
                regions: 2,
                scope: scope.into(),
            },
        })
    }

    /// Puts keys `0..n` of (`scope`, `key`) once each, `callers` at a time.
    pub(super) async fn put_all(
        &self,
        scope: &str,
        key: fn(u64) -> String,
        n: u64,
        callers: usize,
    ) -> Result<(), String> {
        let mut tasks = Vec::new();
        for c in 0..callers as u64 {
            let channel = self.channels[c as usize % self.channels.len()].clone();
            let mut client = TokenBrokerClient::new(channel);
            let scope = scope.to_owned();
            tasks.push(tokio::spawn(async move {
                let mut i = c;
                while i < n {
                    client
                        .put_token(PutTokenRequest {
                            scope: scope.clone(),
                            key: key(i),
                            session_token: (SHAPE.token)(i),
                        })
                        .await
                        .map_err(|s| format!("put {i}: {:?} {}", s.code(), s.message()))?;
                    i += callers as u64;
                }
                Ok::<(), String>(())
            }));
        }
        for task in tasks {
            task.await.map_err(|e| e.to_string())??;
        }
        Ok(())
    }
}
