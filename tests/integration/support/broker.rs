//! Starts the real server in-process on a free loopback port.

use std::net::SocketAddr;
use std::sync::Arc;

use broker::TokenStore;
use std::time::Duration;

use tokenbroker_proto::v1::token_broker_client::TokenBrokerClient;
use tokenbroker_server::config::Settings;
use tokenbroker_server::server;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::Channel;
use tonic_health::pb::health_client::HealthClient;

/// Settings for tests: loopback, no shutdown delay.
pub fn settings() -> Settings {
    let mut s = Settings {
        listen: "127.0.0.1:0".into(),
        ..Settings::default()
    };
    s.shutdown.readiness_delay = Duration::ZERO;
    s.shutdown.drain_timeout = Duration::from_secs(5);
    s
}

pub struct TestBroker {
    pub addr: SocketAddr,
    /// The Prometheus endpoint (`/metrics`).
    pub metrics_addr: SocketAddr,
    /// The plaintext health port, with TLS on.
    pub health_addr: Option<SocketAddr>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), server::ServeError>>>,
}

impl TestBroker {
    pub async fn start(settings: Settings) -> Self {
        let store = server::build_store(&settings).unwrap();
        Self::start_with_store(settings, store).await
    }

    /// Serves a store the test keeps a handle on (to inspect its counters or flush its queue).
    pub async fn start_with_store(settings: Settings, store: Arc<dyn TokenStore>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let metrics = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let metrics_addr = metrics.local_addr().unwrap();
        let health = if settings.server.tls.enabled() {
            Some(TcpListener::bind("127.0.0.1:0").await.unwrap())
        } else {
            None
        };
        let health_addr = health.as_ref().map(|h| h.local_addr().unwrap());
        let (stop, stopped) = oneshot::channel::<()>();
        let listeners = server::Listeners {
            grpc: listener,
            metrics: Some(metrics),
            health,
        };
        let task = tokio::spawn(server::serve_with(settings, store, listeners, async {
            let _ = stopped.await;
        }));
        Self {
            addr,
            metrics_addr,
            health_addr,
            stop: Some(stop),
            task: Some(task),
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub async fn channel(&self) -> Channel {
        Channel::from_shared(self.url())
            .unwrap()
            .timeout(Duration::from_secs(10))
            .connect()
            .await
            .unwrap()
    }

    pub async fn client(&self) -> TokenBrokerClient<Channel> {
        TokenBrokerClient::new(self.channel().await)
    }

    pub async fn health(&self) -> HealthClient<Channel> {
        HealthClient::new(self.channel().await)
    }

    /// Scrapes `/metrics` (plain HTTP/1.0 over a socket).
    pub async fn scrape(&self) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(self.metrics_addr)
            .await
            .unwrap();
        s.write_all(b"GET /metrics HTTP/1.0\r\nHost: test\r\n\r\n")
            .await
            .unwrap();
        let mut body = String::new();
        s.read_to_string(&mut body).await.unwrap();
        assert!(
            body.starts_with("HTTP/1.0 200") || body.starts_with("HTTP/1.1 200"),
            "{body}"
        );
        body
    }

    /// Asks the server to shut down (readiness off, then drain) without waiting.
    pub fn begin_stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    /// Stops the server and waits for it to finish draining.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap().unwrap();
        }
    }
}

impl Drop for TestBroker {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}
