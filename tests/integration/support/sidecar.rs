//! `tokenbroker sidecar` in process, as the binary runs it (`tokenbroker_server::sidecar::run`:
//! the proxy, the probes and `/metrics`), for the tests that check the docs and manifests
//! against what it serves.
//!
//! Why in process: the probes and the metrics are registered when it starts, so nothing needs
//! to reach the account or a broker (both clients connect lazily); the upstream and broker URLs
//! may point at nothing.

use std::net::SocketAddr;
use std::time::Duration;

use tokenbroker_server::config::Settings;
use tokenbroker_server::sidecar::SidecarRunError;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::support::process::free_port;

/// A running sidecar.
pub struct RunningSidecar {
    /// The application-facing URL.
    pub app_url: String,
    /// Where the probes and `/metrics` answer.
    pub metrics_addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), SidecarRunError>>,
}

/// Starts a sidecar with `settings`, its application-facing listener and `metrics.listen` moved
/// to free loopback ports (the rest as given), and no readiness delay at shutdown.
pub async fn start(mut settings: Settings) -> RunningSidecar {
    let metrics_addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    settings.metrics.listen = metrics_addr.to_string();
    settings.sidecar.listen = "127.0.0.1:0".into();
    settings.shutdown.readiness_delay = Duration::ZERO;
    let (stop, stopped) = oneshot::channel::<()>();
    let (ready, app_url) = oneshot::channel::<String>();
    let task = tokio::spawn(async move {
        tokenbroker_server::sidecar::run(
            &settings,
            async {
                let _ = stopped.await;
            },
            move |url| {
                let _ = ready.send(url.to_owned());
            },
        )
        .await
    });
    let app_url = match app_url.await {
        Ok(url) => url,
        Err(_) => panic!("the sidecar did not start: {:?}", task.await),
    };
    RunningSidecar {
        app_url,
        metrics_addr,
        stop: Some(stop),
        task,
    }
}

impl RunningSidecar {
    /// `GET path` on the probes' and metrics' address: the status code and the body.
    pub async fn get(&self, path: &str) -> (u16, String) {
        get(self.metrics_addr, path).await
    }

    /// Stops the sidecar and waits for it to finish.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("the sidecar stops")
            .expect("the sidecar's task")
            .expect("the sidecar ran");
    }
}

/// `GET path` over HTTP/1.0 at `addr`: the status code and the body.
pub async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: test\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    let status = answer
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {answer:?}"));
    let body = answer
        .split_once("\r\n\r\n")
        .map_or(String::new(), |(_, b)| b.to_owned());
    (status, body)
}
