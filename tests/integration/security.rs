//! Transport security and authorization, against the real server on loopback with certificates
//! generated in the test: TLS refuses plaintext, mutual TLS refuses a client without a
//! certificate, the policy scopes identities and bearer tokens (UNAUTHENTICATED,
//! PERMISSION_DENIED naming scope and access, denials counted), probes are answered on the
//! plaintext health port, and certificates and policy reload while serving, with no failed call.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use tokenbroker_proto::v1::token_broker_client::TokenBrokerClient;
use tokenbroker_proto::v1::{GetTokenRequest, MergeTokenRequest, PutTokenRequest, SERVICE_NAME};
use tonic::Code;
use tonic::metadata::MetadataValue;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::support::certs::{Issued, TestCa};
use crate::support::{TestBroker, settings};

const TEAM_A: &str = "spiffe://test/ns/a/sa/api";
const TEAM_C: &str = "spiffe://test/ns/c/sa/api";

fn put(scope: &str) -> PutTokenRequest {
    PutTokenRequest {
        scope: scope.into(),
        key: "k".into(),
        session_token: "0:1#5".into(),
    }
}

fn get(scope: &str) -> GetTokenRequest {
    GetTokenRequest {
        scope: scope.into(),
        key: "k".into(),
        partition_key_range_ids: vec![],
    }
}

fn with_token<T>(message: T, token: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    let value: MetadataValue<_> = format!("Bearer {token}").parse().unwrap();
    request.metadata_mut().insert("authorization", value);
    request
}

fn sha256_hex(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A TLS channel to `broker`, trusting `ca_pem`, presenting `identity` if given.
async fn tls_channel(
    broker: &TestBroker,
    ca_pem: &str,
    identity: Option<&Issued>,
) -> Result<Channel, tonic::transport::Error> {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca_pem))
        .domain_name("localhost");
    if let Some(id) = identity {
        tls = tls.identity(Identity::from_pem(&id.cert_pem, &id.key_pem));
    }
    Endpoint::from_shared(format!("https://{}", broker.addr))
        .unwrap()
        .timeout(Duration::from_secs(5))
        .tls_config(tls)
        .unwrap()
        .connect()
        .await
}

struct Pki {
    dir: tempfile::TempDir,
    ca: TestCa,
}

impl Pki {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
            ca: TestCa::new("tokenbroker test CA"),
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Settings with TLS on (mutual when `mutual`), files written under the temp dir.
    fn settings(&self, mutual: bool) -> tokenbroker_server::config::Settings {
        let mut s = settings();
        let (cert, key) = self.ca.server().write(self.path(), "server");
        s.server.tls.cert_file = Some(cert);
        s.server.tls.key_file = Some(key);
        if mutual {
            s.server.tls.client_ca_file = Some(self.ca.write(self.path(), "client-ca.pem"));
        }
        s
    }
}

#[tokio::test]
async fn plaintext_is_refused_on_a_tls_port_and_probes_use_the_health_port() {
    let pki = Pki::new();
    let broker = TestBroker::start(pki.settings(false)).await;

    let plaintext = Endpoint::from_shared(broker.url())
        .unwrap()
        .timeout(Duration::from_secs(5))
        .connect()
        .await;
    if let Ok(channel) = plaintext {
        let refused = TokenBrokerClient::new(channel).get_token(get("s")).await;
        assert!(refused.is_err(), "plaintext call answered: {refused:?}");
    }

    let channel = tls_channel(&broker, &pki.ca.pem(), None).await.unwrap();
    let mut client = TokenBrokerClient::new(channel.clone());
    client.put_token(put("team-a/orders")).await.unwrap();
    let got = client
        .get_token(get("team-a/orders"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.session_token, "0:1#5");
    let over_tls = HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: SERVICE_NAME.into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(over_tls.status, ServingStatus::Serving as i32);

    // The probe port: plaintext, health only.
    let health_addr = broker.health_addr.expect("a health port with TLS on");
    let probe = Endpoint::from_shared(format!("http://{health_addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    for service in ["", SERVICE_NAME] {
        let status = HealthClient::new(probe.clone())
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner()
            .status;
        assert_eq!(status, ServingStatus::Serving as i32, "service {service:?}");
    }
    let not_here = TokenBrokerClient::new(probe).get_token(get("s")).await;
    assert_eq!(not_here.unwrap_err().code(), Code::Unimplemented);
    broker.stop().await;
}

#[tokio::test]
async fn mutual_tls_requires_a_client_certificate_from_the_ca() {
    let pki = Pki::new();
    let broker = TestBroker::start(pki.settings(true)).await;

    let anonymous = tls_channel(&broker, &pki.ca.pem(), None).await;
    let refused = match anonymous {
        Ok(channel) => TokenBrokerClient::new(channel)
            .get_token(get("s"))
            .await
            .is_err(),
        Err(_) => true,
    };
    assert!(refused, "a client without a certificate was served");

    let stranger = TestCa::new("another CA").client(TEAM_A);
    let foreign = tls_channel(&broker, &pki.ca.pem(), Some(&stranger)).await;
    let refused = match foreign {
        Ok(channel) => TokenBrokerClient::new(channel)
            .get_token(get("s"))
            .await
            .is_err(),
        Err(_) => true,
    };
    assert!(refused, "a certificate from another CA was accepted");

    let member = pki.ca.client(TEAM_A);
    let channel = tls_channel(&broker, &pki.ca.pem(), Some(&member))
        .await
        .unwrap();
    TokenBrokerClient::new(channel)
        .put_token(put("any/scope"))
        .await
        .unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn the_policy_scopes_certificate_identities() {
    let pki = Pki::new();
    let mut s = pki.settings(true);
    let policy = pki.path().join("policy.toml");
    std::fs::write(
        &policy,
        format!(
            "[[allow]]\nidentity = \"{TEAM_A}\"\nscopes = [\"team-a/*\"]\naccess = [\"read\", \"write\"]\n"
        ),
    )
    .unwrap();
    s.auth.policy_file = Some(policy);
    let broker = TestBroker::start(s).await;

    let a = pki.ca.client(TEAM_A);
    let mut team_a =
        TokenBrokerClient::new(tls_channel(&broker, &pki.ca.pem(), Some(&a)).await.unwrap());
    team_a.put_token(put("team-a/orders")).await.unwrap();
    team_a.get_token(get("team-a/orders")).await.unwrap();
    let denied = team_a.put_token(put("team-b/orders")).await.unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
    assert!(
        denied.message().contains("write") && denied.message().contains("\"team-b/orders\""),
        "{}",
        denied.message()
    );

    let c = pki.ca.client(TEAM_C);
    let mut unlisted =
        TokenBrokerClient::new(tls_channel(&broker, &pki.ca.pem(), Some(&c)).await.unwrap());
    let denied = unlisted.get_token(get("team-a/orders")).await.unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied, "{denied:?}");
    // MergeToken needs an authenticated caller only: a verified certificate is one.
    unlisted
        .merge_token(MergeTokenRequest {
            session_tokens: vec!["0:1#1".into()],
        })
        .await
        .unwrap();

    let scrape = broker.scrape().await;
    assert!(
        scrape.contains("tokenbroker_auth_denials_total{reason=\"permission_denied\"} 2"),
        "{scrape}"
    );
    broker.stop().await;
}

#[tokio::test]
async fn bearer_tokens_read_only_where_allowed_and_no_credentials_is_unauthenticated() {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.toml");
    std::fs::write(
        &policy,
        format!(
            "[[allow]]\nbearer_token_sha256 = \"{}\"\nscopes = [\"reports/*\"]\naccess = [\"read\"]\n",
            sha256_hex("reader-secret")
        ),
    )
    .unwrap();
    let mut s = settings();
    s.auth.policy_file = Some(policy);
    let broker = TestBroker::start(s).await;
    let mut c = broker.client().await;

    c.get_token(with_token(get("reports/daily"), "reader-secret"))
        .await
        .unwrap();
    let denied = c
        .put_token(with_token(put("reports/daily"), "reader-secret"))
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
    assert!(!denied.message().contains("reader-secret"));
    let elsewhere = c
        .get_token(with_token(get("orders/x"), "reader-secret"))
        .await
        .unwrap_err();
    assert_eq!(elsewhere.code(), Code::PermissionDenied);

    for request in [
        tonic::Request::new(get("reports/daily")),
        with_token(get("reports/daily"), "wrong-secret"),
    ] {
        let status = c.get_token(request).await.unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    }
    let merge = c
        .merge_token(MergeTokenRequest {
            session_tokens: vec!["0:1#1".into()],
        })
        .await
        .unwrap_err();
    assert_eq!(merge.code(), Code::Unauthenticated);
    c.merge_token(with_token(
        MergeTokenRequest {
            session_tokens: vec!["0:1#1".into()],
        },
        "reader-secret",
    ))
    .await
    .unwrap();
    let scrape = broker.scrape().await;
    assert!(
        scrape.contains("tokenbroker_auth_denials_total{reason=\"unauthenticated\"} 3"),
        "{scrape}"
    );
    broker.stop().await;
}

/// Polls `check` until it holds, for at most 20 seconds: a reload is a file change the test
/// cannot await from outside the server, only observe.
async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("{what} never happened");
}

#[tokio::test]
async fn a_policy_change_is_reloaded_and_a_broken_one_keeps_the_policy_in_force() {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.toml");
    let rule = |scope: &str| {
        format!(
            "[[allow]]\nbearer_token_sha256 = \"{}\"\nscopes = [\"{scope}\"]\naccess = [\"read\"]\n",
            sha256_hex("t")
        )
    };
    std::fs::write(&policy, rule("a/*")).unwrap();
    let mut s = settings();
    s.auth.policy_file = Some(policy.clone());
    s.auth.reload_interval = Some(Duration::from_millis(20));
    let broker = TestBroker::start(s).await;
    let c = broker.client().await;
    let reads = |scope: &'static str| {
        let mut c = c.clone();
        async move { c.get_token(with_token(get(scope), "t")).await.is_ok() }
    };
    assert!(reads("a/x").await && !reads("b/x").await);

    std::fs::write(&policy, rule("b/*")).unwrap();
    eventually("the new policy", async || reads("b/x").await).await;
    assert!(!reads("a/x").await, "the old rule is gone");

    std::fs::write(&policy, "[[allow]]\nthis is not toml").unwrap();
    // Give the broken file a few reload rounds to (not) take effect, then check.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        reads("b/x").await,
        "a broken policy file replaced the policy in force"
    );
    broker.stop().await;
}

/// Rotates the server certificate (to one from a new CA) while clients call without pause and
/// open new connections: no call fails, and new connections get the new certificate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_rotation_under_load_fails_no_call() {
    let pki = Pki::new();
    let mut s = pki.settings(false);
    s.server.tls.reload_interval = Some(Duration::from_millis(20));
    let cert_file = s.server.tls.cert_file.clone().unwrap();
    let key_file = s.server.tls.key_file.clone().unwrap();
    let broker = Arc::new(TestBroker::start(s).await);
    let next_ca = TestCa::new("rotated CA");
    let both = format!("{}{}", pki.ca.pem(), next_ca.pem());

    let stop = Arc::new(AtomicBool::new(false));
    let calls = Arc::new(AtomicU64::new(0));
    let mut load = Vec::new();
    for worker in 0..4 {
        let (broker, stop, calls, both) =
            (broker.clone(), stop.clone(), calls.clone(), both.clone());
        load.push(tokio::spawn(async move {
            let mut failures = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                // A new connection every 20 calls, so handshakes span the rotation.
                let channel = match tls_channel(&broker, &both, None).await {
                    Ok(channel) => channel,
                    Err(e) => {
                        failures.push(format!("connect: {e}"));
                        continue;
                    }
                };
                let mut client = TokenBrokerClient::new(channel);
                for i in 0..20 {
                    let scope = format!("rotation/{worker}");
                    let result = if i % 2 == 0 {
                        client.put_token(put(&scope)).await.map(|_| ())
                    } else {
                        client.get_token(get(&scope)).await.map(|_| ())
                    };
                    if let Err(e) = result {
                        failures.push(e.to_string());
                    }
                    calls.fetch_add(1, Ordering::Relaxed);
                }
            }
            failures
        }));
    }
    eventually("load", async || calls.load(Ordering::Relaxed) > 200).await;
    let rotated = next_ca.server();
    // Key first, then certificate: a poll between the two writes sees a mismatched pair, which
    // must be refused and retried, not served.
    std::fs::write(&key_file, &rotated.key_pem).unwrap();
    std::fs::write(&cert_file, &rotated.cert_pem).unwrap();
    eventually("a connection with the rotated certificate", async || {
        tls_channel(&broker, &next_ca.pem(), None).await.is_ok()
    })
    .await;
    let at_rotation = calls.load(Ordering::Relaxed);
    eventually("load after the rotation", async || {
        calls.load(Ordering::Relaxed) > at_rotation + 200
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    for task in load {
        let failures = task.await.unwrap();
        assert!(failures.is_empty(), "failed calls: {failures:?}");
    }
    assert!(
        tls_channel(&broker, &pki.ca.pem(), None).await.is_err(),
        "the old certificate is still served to new connections"
    );
}

/// The Rust client and the CLI: TLS with a CA, a client certificate (mutual TLS), a bearer
/// token; the CLI's options before or after the subcommand, or from the environment.
#[tokio::test]
async fn the_rust_client_and_the_cli_use_tls_client_certificates_and_bearer_tokens() {
    use tokenbroker_client::{ClientConfig, ClientTls};

    let pki = Pki::new();
    let mut s = pki.settings(true);
    let policy = pki.path().join("policy.toml");
    std::fs::write(
        &policy,
        format!(
            "[[allow]]\nidentity = \"{TEAM_A}\"\nscopes = [\"team-a/*\"]\naccess = [\"read\", \"write\"]\n\
             [[allow]]\nbearer_token_sha256 = \"{}\"\nscopes = [\"cli/*\"]\naccess = [\"read\", \"write\"]\n",
            sha256_hex("cli-secret")
        ),
    )
    .unwrap();
    s.auth.policy_file = Some(policy);
    let broker = TestBroker::start(s).await;
    let url = format!("https://127.0.0.1:{}", broker.addr.port());
    let a = pki.ca.client(TEAM_A);

    let client = tokenbroker_client::TokenBrokerClient::new(
        ClientConfig::new([url.clone()])
            .with_deadline(Duration::from_secs(5))
            .with_tls(
                ClientTls::with_ca(pki.ca.pem())
                    .with_identity(a.cert_pem.clone(), a.key_pem.clone()),
            ),
    )
    .unwrap();
    assert_eq!(
        client.put_token("team-a/x", "k", "0:1#3").await.unwrap(),
        "0:1#3"
    );
    let c = pki.ca.client(TEAM_C);
    let with_bearer = tokenbroker_client::TokenBrokerClient::new(
        ClientConfig::new([url.clone()])
            .with_deadline(Duration::from_secs(5))
            .with_tls(
                ClientTls::with_ca(pki.ca.pem())
                    .with_identity(c.cert_pem.clone(), c.key_pem.clone()),
            )
            .with_bearer_token("cli-secret"),
    )
    .unwrap();
    with_bearer.put_token("cli/x", "k", "0:1#4").await.unwrap();
    let denied = with_bearer
        .put_token("team-a/x", "k", "0:1#4")
        .await
        .unwrap_err();
    assert!(denied.is_rejection(), "{denied}");
    let no_certificate = tokenbroker_client::TokenBrokerClient::new(
        ClientConfig::new([url.clone()])
            .with_deadline(Duration::from_secs(5))
            .with_tls(ClientTls::with_ca(pki.ca.pem())),
    )
    .unwrap();
    assert!(
        no_certificate
            .get_token("team-a/x", "k", &[])
            .await
            .is_err()
    );

    let (cert, key) = a.write(pki.path(), "team-a");
    let ca = pki.ca.write(pki.path(), "ca.pem");
    let (cert, key, ca) = (
        cert.display().to_string(),
        key.display().to_string(),
        ca.display().to_string(),
    );
    let tls_args = [
        "--ca",
        ca.as_str(),
        "--cert",
        cert.as_str(),
        "--cert-key",
        key.as_str(),
    ];
    // Options before the subcommand.
    let mut args = vec!["--broker", url.as_str()];
    args.extend(tls_args);
    args.extend(["get", "--scope", "team-a/x", "--key", "k"]);
    let out = run_cli(&args, &[]).await;
    assert_eq!(out.0, Some(0), "{}", out.2);
    assert_eq!(out.1, "0:1#3\n");
    // After it, the broker from the environment, a bearer token from the environment.
    let (cert_c, key_c) = c.write(pki.path(), "team-c");
    let (cert_c, key_c) = (cert_c.display().to_string(), key_c.display().to_string());
    let args = [
        "get",
        "--scope",
        "cli/x",
        "--key",
        "k",
        "--ca",
        ca.as_str(),
        "--cert",
        cert_c.as_str(),
        "--cert-key",
        key_c.as_str(),
    ];
    let out = run_cli(
        &args,
        &[
            ("TOKENBROKER_CLI_BROKER", url.as_str()),
            ("TOKENBROKER_CLI_TOKEN", "cli-secret"),
        ],
    )
    .await;
    assert_eq!(out.0, Some(0), "{}", out.2);
    assert_eq!(out.1, "0:1#4\n");
    let out = run_cli(&args, &[("TOKENBROKER_CLI_BROKER", url.as_str())]).await;
    assert_eq!(out.0, Some(2), "no token: refused");
    assert!(out.2.contains("PermissionDenied"), "{}", out.2);
    broker.stop().await;
}

/// Runs the CLI; returns (exit code, stdout, stderr).
async fn run_cli(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String, String) {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_tokenbroker"));
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("TOKENBROKER_")) {
        cmd.env_remove(k);
    }
    let out = cmd
        .args(args)
        .envs(env.iter().copied())
        .env_remove("RUST_LOG")
        .output()
        .await
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// No policy: one start-up warning that any client can write any scope; and a log written to
/// a pipe (not a terminal) carries no colour codes.
#[tokio::test]
async fn without_a_policy_the_start_up_log_warns_in_plain_text() {
    use tokio::io::{AsyncBufReadExt, BufReader};

    let port = crate::support::process::free_port();
    let mut child = crate::support::process::spawn_broker_binary(
        &[("TOKENBROKER_LISTEN", format!("127.0.0.1:{port}"))],
        std::process::Stdio::piped(),
    );
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut seen = Vec::new();
    let found = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            let serving = line.contains("tokenbroker serving");
            seen.push(line);
            if serving {
                return true;
            }
        }
        false
    })
    .await;
    child.start_kill().unwrap();
    child.wait().await.unwrap();
    assert_eq!(found, Ok(true), "{seen:#?}");
    let warnings: Vec<_> = seen
        .iter()
        .filter(|l| l.contains("can read and write every scope"))
        .collect();
    assert_eq!(warnings.len(), 1, "{seen:#?}");
    assert!(seen.iter().all(|l| !l.contains('\u{1b}')), "{seen:#?}");
}
