//! A real tokenbroker server in this process that can be killed outright.
//!
//! Why its own runtime: killing the runtime closes every socket of the server at once, as a
//! crashed pod does; stopping a server gracefully would not show what callers see in a crash.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use broker::storage::memory::MemoryStore;
use tokenbroker_server::config::Settings;
use tokenbroker_server::server;

/// Why the broker could not start.
#[derive(Debug, thiserror::Error)]
pub enum BrokerStartError {
    #[error("cannot bind a loopback port: {0}")]
    Bind(#[from] std::io::Error),
}

/// A tokenbroker server on a loopback port with the in-memory store.
pub struct KillableBroker {
    addr: SocketAddr,
    runtime: Option<tokio::runtime::Runtime>,
}

impl KillableBroker {
    pub fn start() -> Result<Self, BrokerStartError> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("tokenbroker")
            .enable_all()
            .build()?;
        let mut settings = Settings {
            listen: addr.to_string(),
            ..Settings::default()
        };
        settings.shutdown.readiness_delay = Duration::ZERO;
        runtime.spawn(async move {
            let store = Arc::new(MemoryStore::new(settings.memory.max_keys));
            let served = match tokio::net::TcpListener::from_std(listener) {
                Ok(listener) => {
                    server::serve(settings, store, listener, std::future::pending()).await
                }
                Err(error) => {
                    eprintln!("tokenbroker: cannot use the listener: {error}");
                    return;
                }
            };
            if let Err(error) = served {
                eprintln!("tokenbroker stopped: {error}");
            }
        });
        Ok(Self {
            addr,
            runtime: Some(runtime),
        })
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Kills the server: every connection closes at once, nothing is drained.
    pub fn kill(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl Drop for KillableBroker {
    fn drop(&mut self) {
        self.kill();
    }
}
