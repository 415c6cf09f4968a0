//! Redis over TLS, proven against a real `redis-server` with a TLS port and a CA made by the
//! test (rcgen): `rediss://` with `redis.ca_file`, Redis mutual TLS with
//! `redis.client_cert_file`/`redis.client_key_file` (and what an operator sees without them),
//! a CA that does not verify the server, and the start-up checks of those files. The Redis ACL
//! rule of docs/redis.md is proven in [`acl`]; `rediss+cluster://` and `rediss+sentinel://` in
//! [`topologies`].
//!
//! The brokers here are the built binary, configured by `TOKENBROKER_*` variables as in a
//! deployment, without `SSL_CERT_FILE`: the CA comes from `redis.ca_file` only.

pub(crate) mod acl;
mod topologies;

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokenbroker_proto::v1::token_broker_client::TokenBrokerClient;
use tokenbroker_proto::v1::{GetTokenRequest, PutTokenRequest, SERVICE_NAME};
use tokenbroker_server::config::Settings;
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStderr};
use tokio_stream::StreamExt;
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::support::process::{connect_when_listening, free_port, spawn_broker_binary};
use crate::support::redis::{RedisServer, write_test_certificates};

/// A broker process with its log (JSON lines on stderr).
struct Broker {
    child: Child,
    channel: Channel,
    log: Lines<BufReader<ChildStderr>>,
}

/// Starts the broker binary on a TLS-only Redis at `port`, with extra `TOKENBROKER_*` settings.
async fn start_broker(port: u16, extra: &[(&str, String)]) -> Broker {
    start_broker_on(&format!("rediss://localhost:{port}"), extra).await
}

/// Starts the broker binary with `url` as its primary, with extra `TOKENBROKER_*` settings.
async fn start_broker_on(url: &str, extra: &[(&str, String)]) -> Broker {
    let listen = free_port();
    let mut env = vec![
        ("TOKENBROKER_LISTEN", format!("127.0.0.1:{listen}")),
        ("TOKENBROKER_REDIS__PRIMARY_URL", url.to_owned()),
        ("TOKENBROKER_REDIS__HEALTH_INTERVAL", "100ms".into()),
        // A TLS handshake takes tens of milliseconds in a debug build (ring's C code is not
        // optimised there), and the tests run side by side on two cores: the default 250 ms
        // deadline, which includes connecting, would time calls out now and then.
        ("TOKENBROKER_REDIS__CONNECT_TIMEOUT", "2s".into()),
        ("TOKENBROKER_REDIS__OPERATION_TIMEOUT", "2s".into()),
        ("TOKENBROKER_SHUTDOWN__READINESS_DELAY", "0s".into()),
        ("TOKENBROKER_LOG__FORMAT", "json".into()),
        ("TOKENBROKER_LOG__LEVEL", "warn".into()),
    ];
    env.extend(extra.iter().cloned());
    let mut child = spawn_broker_binary(&env, Stdio::piped());
    let log = BufReader::new(child.stderr.take().unwrap()).lines();
    let channel = connect_when_listening(listen).await;
    Broker {
        child,
        channel,
        log,
    }
}

fn file(dir: &Path, name: &str) -> String {
    dir.join(name).display().to_string()
}

impl Broker {
    /// Waits for readiness (the health Watch stream pushes each change), for at most 20 s.
    async fn wait_ready(&self) {
        let mut watch = HealthClient::new(self.channel.clone())
            .watch(HealthCheckRequest {
                service: SERVICE_NAME.into(),
            })
            .await
            .unwrap()
            .into_inner();
        tokio::time::timeout(Duration::from_secs(20), async {
            while let Some(Ok(r)) = watch.next().await {
                if r.status == ServingStatus::Serving as i32 {
                    return;
                }
            }
            panic!("health stream ended before the broker was ready");
        })
        .await
        .expect("broker never ready");
    }

    async fn status(&self, service: &str) -> ServingStatus {
        let reply = HealthClient::new(self.channel.clone())
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner();
        ServingStatus::try_from(reply.status).unwrap()
    }

    /// The next log line containing `needle` (the lines before it are skipped), within 20 s.
    async fn log_line(&mut self, needle: &str) -> String {
        tokio::time::timeout(Duration::from_secs(20), async {
            while let Some(line) = self.log.next_line().await.unwrap() {
                if line.contains(needle) {
                    return line;
                }
            }
            panic!("the broker exited before logging {needle:?}");
        })
        .await
        .unwrap_or_else(|_| panic!("no log line with {needle:?}"))
    }

    /// The first health check failed (the breaker opened on it): the instance was tried and
    /// refused. Readiness and the instance's own health service must both say NOT_SERVING.
    /// Returns the log line, whose `reason` says why.
    async fn assert_refused(&mut self) -> String {
        let line = self.log_line("circuit breaker OPEN").await;
        assert_eq!(self.status(SERVICE_NAME).await, ServingStatus::NotServing);
        assert_eq!(
            self.status("redis/primary").await,
            ServingStatus::NotServing
        );
        line
    }

    /// PutToken then GetToken through the broker.
    async fn put_and_get(&self, key: &str) {
        let mut c = TokenBrokerClient::new(self.channel.clone());
        let put = c
            .put_token(PutTokenRequest {
                scope: "acct/db/c".into(),
                key: key.into(),
                session_token: "0:1#7,1:2#9".into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(put.session_token, "0:1#7,1:2#9");
        let read = c
            .get_token(GetTokenRequest {
                scope: "acct/db/c".into(),
                key: key.into(),
                partition_key_range_ids: vec![],
            })
            .await
            .unwrap()
            .into_inner();
        assert!(read.found && !read.degraded, "{read:?}");
        assert_eq!(read.session_token, "0:1#7,1:2#9");
    }

    async fn stop(mut self) {
        self.child.start_kill().unwrap();
        self.child.wait().await.unwrap();
    }
}

/// `rediss://` end to end, the server certificate verified against `redis.ca_file` alone.
#[tokio::test]
async fn rediss_with_redis_ca_file_puts_and_gets() {
    let dir = tempfile::tempdir().unwrap();
    write_test_certificates(dir.path());
    let redis = RedisServer::start_tls(dir.path());
    let broker = start_broker(
        redis.port(),
        &[("TOKENBROKER_REDIS__CA_FILE", file(dir.path(), "ca.pem"))],
    )
    .await;
    broker.wait_ready().await;
    broker.put_and_get("k").await;
    broker.stop().await;
}

/// Redis mutual TLS (`--tls-auth-clients yes`): with the client certificate the broker works;
/// without it the server refuses the connection, the broker is not ready, and its log says that
/// the server required a certificate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_mutual_tls_needs_the_client_certificate() {
    let dir = tempfile::tempdir().unwrap();
    write_test_certificates(dir.path());
    let redis = RedisServer::start_mtls(dir.path());
    let ca = ("TOKENBROKER_REDIS__CA_FILE", file(dir.path(), "ca.pem"));

    let with_cert = start_broker(
        redis.port(),
        &[
            ca.clone(),
            (
                "TOKENBROKER_REDIS__CLIENT_CERT_FILE",
                file(dir.path(), "client.pem"),
            ),
            (
                "TOKENBROKER_REDIS__CLIENT_KEY_FILE",
                file(dir.path(), "client.key"),
            ),
        ],
    )
    .await;
    with_cert.wait_ready().await;
    with_cert.put_and_get("mtls").await;

    let mut without = start_broker(redis.port(), &[ca]).await;
    let line = without.assert_refused().await;
    // The server's alert, or when the connection was reset before it could be read, the
    // broker's explanation of a TLS connection closed right after the handshake.
    assert!(
        line.contains("CertificateRequired") || line.contains("set redis.client_cert_file"),
        "the log should say the server wants a client certificate: {line}"
    );
    // The broker that has one is unaffected.
    with_cert.put_and_get("mtls-2").await;
    without.stop().await;
    with_cert.stop().await;
}

/// A CA that did not sign the server's certificate: verification fails, the broker is not
/// ready, and the log names the reason.
#[tokio::test]
async fn a_wrong_redis_ca_file_fails_verification() {
    let dir = tempfile::tempdir().unwrap();
    write_test_certificates(dir.path());
    let redis = RedisServer::start_tls(dir.path());
    let mut broker = start_broker(
        redis.port(),
        &[(
            "TOKENBROKER_REDIS__CA_FILE",
            file(dir.path(), "other-ca.pem"),
        )],
    )
    .await;
    let line = broker.assert_refused().await;
    assert!(line.contains("UnknownIssuer"), "{line}");
    broker.stop().await;
}

fn load(env: &[(&str, String)]) -> Result<Settings, String> {
    let mut vars = vec![(
        "TOKENBROKER_REDIS__PRIMARY_URL".to_string(),
        "rediss://localhost:6380".to_string(),
    )];
    vars.extend(env.iter().map(|(k, v)| (k.to_string(), v.clone())));
    Settings::load_from(None, vars).map_err(|e| e.to_string())
}

/// The TLS files are checked while the configuration loads: each fault names its key, and the
/// key file's contents never appear.
#[test]
fn redis_tls_files_are_checked_at_start_up() {
    let dir = tempfile::tempdir().unwrap();
    write_test_certificates(dir.path());
    let f = |name: &str| file(dir.path(), name);
    let (ca, cert, key) = (
        "TOKENBROKER_REDIS__CA_FILE",
        "TOKENBROKER_REDIS__CLIENT_CERT_FILE",
        "TOKENBROKER_REDIS__CLIENT_KEY_FILE",
    );
    let s = load(&[
        (ca, f("ca.pem")),
        (cert, f("client.pem")),
        (key, f("client.key")),
    ])
    .unwrap();
    assert_eq!(s.redis.ca_file.unwrap(), dir.path().join("ca.pem"));
    let debug = format!(
        "{:?}",
        load(&[(cert, f("client.pem")), (key, f("client.key"))])
    );
    let secret = std::fs::read_to_string(dir.path().join("client.key")).unwrap();
    let secret_line = secret.lines().nth(1).unwrap();
    assert!(!debug.contains(secret_line), "{debug}");

    let cases = [
        (vec![(ca, f("missing.pem"))], "redis.ca_file: cannot read"),
        // A key is not a CA certificate.
        (vec![(ca, f("server.key"))], "redis.ca_file: "),
        (
            vec![(cert, f("client.pem"))],
            "redis.client_cert_file is set",
        ),
        (vec![(key, f("client.key"))], "redis.client_key_file is set"),
        (
            vec![(cert, f("client.key")), (key, f("client.key"))],
            "redis.client_cert_file: ",
        ),
        // The server's key with the client's certificate: they do not belong together.
        (
            vec![(cert, f("client.pem")), (key, f("server.key"))],
            "redis.client_key_file: ",
        ),
        (
            vec![(cert, f("client.pem")), (key, f("ca.pem"))],
            "redis.client_key_file: ",
        ),
    ];
    for (env, needle) in cases {
        let err = load(&env).unwrap_err();
        assert!(err.contains(needle), "{env:?}: {err}");
        for name in ["client.key", "server.key"] {
            let key = std::fs::read_to_string(dir.path().join(name)).unwrap();
            assert!(!err.contains(key.lines().nth(1).unwrap()), "{err}");
        }
    }
    let mismatch = load(&[(cert, f("client.pem")), (key, f("server.key"))]).unwrap_err();
    assert!(
        mismatch.contains("is not the key of the certificate"),
        "{mismatch}"
    );

    // The files apply to rediss:// only: with no rediss:// URL they are a mistake.
    let plain = Settings::load_from(
        None,
        vec![
            (
                "TOKENBROKER_REDIS__PRIMARY_URL".into(),
                "redis://localhost:6379".into(),
            ),
            (ca.into(), f("ca.pem")),
        ],
    )
    .unwrap_err()
    .to_string();
    assert!(plain.contains("redis.ca_file is set but"), "{plain}");
}
