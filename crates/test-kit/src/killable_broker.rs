//! A real tokenbroker server in this process that can be killed outright and restarted.
//!
//! Why its own runtime: shutting that runtime down drops every task of the server, so every
//! socket closes at once and nothing is drained, as when a pod crashes; stopping a server
//! gracefully would not show what callers see in a crash. Why in process rather than the
//! binary: tests hand it a store they keep (two brokers sharing one store are two replicas
//! sharing Redis), and the demo needs no built binary.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use broker::TokenStore;
use broker::storage::memory::MemoryStore;
use tokenbroker_server::config::Settings;
use tokenbroker_server::server;
use tokio::runtime::Runtime;

/// How long a kill waits for the server's runtime to drop its tasks (it takes milliseconds; the
/// bound only keeps a wedged blocking task from hanging the caller).
const KILL_WAIT: Duration = Duration::from_secs(10);

/// An in-memory store bounded as the broker's default (`memory.max_keys`).
pub fn memory_store() -> Arc<dyn TokenStore> {
    Arc::new(MemoryStore::new(Settings::default().memory.max_keys))
}

/// A tokenbroker server on a loopback port, serving a given store with the default settings
/// (no shutdown delay), on a runtime of its own with one worker. Killed when dropped.
pub struct KillableBroker {
    addr: SocketAddr,
    store: Arc<dyn TokenStore>,
    runtime: Option<Runtime>,
}

impl KillableBroker {
    /// Starts serving `store` on a free loopback port; it accepts connections on return.
    ///
    /// # Panics
    ///
    /// If it cannot start (see [`Self::try_start`]).
    pub fn start(store: Arc<dyn TokenStore>) -> Self {
        Self::try_start(store).expect("cannot start the in-process broker")
    }

    /// [`Self::start`] that returns the error: no loopback port, or no runtime.
    pub fn try_start(store: Arc<dyn TokenStore>) -> io::Result<Self> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let runtime = serve(listener, addr, store.clone())?;
        Ok(Self {
            addr,
            store,
            runtime: Some(runtime),
        })
    }

    /// The address it listens on; the same after a restart.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://<addr>`, for a client's endpoint list.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Kills the server: every connection closes at once, nothing is drained. Returns once
    /// every socket is closed, so calls from then on are refused and [`Self::restart`] can bind
    /// the port again. Does nothing if it is not running.
    pub fn kill(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            // Waiting for a runtime's threads is refused inside an async context, where tests
            // call this: the wait happens on a thread of its own, which this one joins.
            let stopped = std::thread::spawn(move || runtime.shutdown_timeout(KILL_WAIT)).join();
            if stopped.is_err() {
                eprintln!("test kit: the killed broker's runtime panicked while shutting down");
            }
        }
    }

    /// Kills it if it runs, then serves the same store again on the same port; it accepts
    /// connections on return. What the store holds survives, as Redis outlives a broker pod.
    ///
    /// # Panics
    ///
    /// If the port cannot be bound again (another process took it meanwhile) or no runtime can
    /// be built.
    pub fn restart(&mut self) {
        self.kill();
        let listener = std::net::TcpListener::bind(self.addr)
            .expect("cannot bind the killed broker's port again");
        let runtime = serve(listener, self.addr, self.store.clone())
            .expect("cannot start the in-process broker again");
        self.runtime = Some(runtime);
    }
}

impl Drop for KillableBroker {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A runtime serving `store` on `listener` until it is shut down.
fn serve(
    listener: std::net::TcpListener,
    addr: SocketAddr,
    store: Arc<dyn TokenStore>,
) -> io::Result<Runtime> {
    listener.set_nonblocking(true)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("tokenbroker")
        .enable_all()
        .build()?;
    let registered = {
        let _context = runtime.enter();
        tokio::net::TcpListener::from_std(listener)
    };
    let listener = match registered {
        Ok(listener) => listener,
        Err(error) => {
            // Dropping a runtime waits for its threads, which an async caller may not do.
            runtime.shutdown_background();
            return Err(error);
        }
    };
    let mut settings = Settings {
        listen: addr.to_string(),
        ..Settings::default()
    };
    settings.shutdown.readiness_delay = Duration::ZERO;
    runtime.spawn(async move {
        if let Err(error) = server::serve(settings, store, listener, std::future::pending()).await {
            eprintln!("test kit: the in-process broker stopped: {error}");
        }
    });
    Ok(runtime)
}
