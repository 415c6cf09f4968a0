//! Discovery against real brokers on loopback: a test resolver whose answer the test changes
//! (each "pod" is a broker on its own port), the system resolver on `localhost`, a name that
//! does not resolve yet, and the background task's lifetime.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::{SCOPE, TEST_DEADLINE, bounded, dead_endpoint, token};
use test_kit::{KillableBroker, memory_store};
use tokenbroker_client::{
    BreakerConfig, ClientConfig, ClientError, Discovery, Resolver, TokenBrokerClient,
};
use tokio::sync::{oneshot, watch};

/// Long enough that the background task never re-resolves on its own during a test, so that the
/// test decides when a re-resolution happens (`refresh_endpoints`).
const NEVER: Duration = Duration::from_secs(3600);
const TARGET: &str = "http://tokenbroker-headless.test.svc.cluster.local:50051";

fn addr_of(url: &str) -> SocketAddr {
    url.trim_start_matches("http://").parse().unwrap()
}

/// A DNS whose answer the test sets (`None`: the lookup fails), counting the lookups.
struct TestDns {
    answer: Arc<Mutex<Option<Vec<SocketAddr>>>>,
    lookups: Arc<watch::Sender<u64>>,
}

impl TestDns {
    fn new(answer: Option<Vec<SocketAddr>>) -> Self {
        Self {
            answer: Arc::new(Mutex::new(answer)),
            lookups: Arc::new(watch::channel(0).0),
        }
    }

    fn answer(&self, answer: Option<Vec<SocketAddr>>) {
        *self.answer.lock().unwrap() = answer;
    }

    fn lookups(&self) -> u64 {
        *self.lookups.borrow()
    }

    async fn wait_for_lookups(&self, count: u64) {
        let mut lookups = self.lookups.subscribe();
        bounded(lookups.wait_for(|&n| n >= count)).await.unwrap();
    }

    fn resolver(&self) -> impl Resolver {
        let answer = Arc::clone(&self.answer);
        let lookups = Arc::clone(&self.lookups);
        move |_host: String, _port: u16| {
            // Counted before the answer is read: once lookup n+1 has started, lookup n's answer
            // has been applied.
            lookups.send_modify(|n| *n += 1);
            let answer = answer.lock().unwrap().clone();
            async move {
                answer.ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, "NXDOMAIN"))
            }
        }
    }

    fn config(&self, interval: Duration) -> ClientConfig {
        ClientConfig::discover_with(
            Discovery::new(TARGET)
                .with_interval(interval)
                .with_resolver(self.resolver()),
        )
        .with_deadline(TEST_DEADLINE)
    }
}

/// How many of the keys `{prefix}{0..count}` the broker itself stores: which broker served the
/// writes, since each test broker has a store of its own.
async fn stored_on(broker: &KillableBroker, prefix: &str, count: u64) -> u64 {
    let direct = TokenBrokerClient::new(ClientConfig::new([broker.url()])).unwrap();
    let mut found = 0;
    for i in 0..count {
        let reply = bounded(direct.get_token(SCOPE, &format!("{prefix}{i}"), &[]))
            .await
            .unwrap();
        found += u64::from(reply.session_token.is_some());
    }
    found
}

#[tokio::test]
async fn a_re_resolution_adds_new_brokers_drops_gone_ones_and_keeps_the_rest_as_they_are() {
    let a = KillableBroker::start(memory_store());
    // B is a pod that is down: its breaker opens on the first failed call, which is what shows
    // whether B's endpoint survives the re-resolution or is rebuilt with a fresh breaker.
    let b = dead_endpoint();
    let c = KillableBroker::start(memory_store());
    let dns = TestDns::new(Some(vec![a.addr(), addr_of(&b)]));
    let client = TokenBrokerClient::new(dns.config(NEVER).with_breaker(BreakerConfig {
        failure_threshold: 1,
        open_for: Duration::from_secs(600),
    }))
    .unwrap();

    // The first call waits for the first resolution instead of failing.
    for i in 0..10 {
        assert!(bounded(client.record_write(SCOPE, &format!("before{i}"), &token(i))).await);
    }
    assert_eq!(client.endpoints(), [a.url(), b.clone()]);
    assert_eq!(
        client.stats().attempt_failures,
        1,
        "B failed once, then its breaker kept it out"
    );

    dns.answer(Some(vec![addr_of(&b), c.addr()]));
    assert_eq!(bounded(client.refresh_endpoints()).await.unwrap(), 2);
    for i in 0..10 {
        assert!(bounded(client.record_write(SCOPE, &format!("after{i}"), &token(i))).await);
    }

    assert_eq!(client.endpoints(), [b.clone(), c.url()]);
    assert_eq!(
        client.stats().attempt_failures,
        1,
        "B kept its open breaker: a rebuilt B would have been dialled and failed again"
    );
    assert_eq!(stored_on(&c, "after", 10).await, 10, "calls reach C");
    assert_eq!(stored_on(&a, "after", 10).await, 0, "and no longer A");
    assert_eq!(stored_on(&a, "before", 10).await, 10);
    let stats = client.stats();
    assert_eq!((stats.resolutions, stats.endpoints), (2, 2));
}

#[tokio::test]
async fn a_failed_or_empty_resolution_keeps_the_brokers_in_use() {
    let a = KillableBroker::start(memory_store());
    let dns = TestDns::new(Some(vec![a.addr()]));
    let client = TokenBrokerClient::new(dns.config(NEVER)).unwrap();
    assert!(bounded(client.record_write(SCOPE, "k0", &token(0))).await);

    dns.answer(None);
    let failed = bounded(client.refresh_endpoints()).await;
    assert!(
        matches!(failed, Err(ClientError::Resolve { .. })),
        "{failed:?}"
    );
    dns.answer(Some(Vec::new()));
    let empty = bounded(client.refresh_endpoints()).await;
    assert!(
        matches!(empty, Err(ClientError::ResolvedNothing { .. })),
        "{empty:?}"
    );

    assert_eq!(client.endpoints(), [a.url()]);
    assert!(bounded(client.record_write(SCOPE, "k1", &token(1))).await);
    assert_eq!(
        bounded(client.token_for_read(SCOPE, "k1", &[])).await,
        Some(token(1))
    );
    let stats = client.stats();
    assert_eq!(
        (
            stats.resolutions,
            stats.resolution_failures,
            stats.endpoints
        ),
        (1, 2, 1)
    );
    assert_eq!(stats.write_failures + stats.read_failures, 0);
}

#[tokio::test]
async fn a_name_that_does_not_resolve_yet_fails_calls_fast_until_it_does() {
    let a = KillableBroker::start(memory_store());
    let dns = TestDns::new(None);
    // A deadline far longer than a failed lookup: the calls below must not wait for it.
    let deadline = Duration::from_secs(20);
    let client = TokenBrokerClient::new(dns.config(NEVER).with_deadline(deadline))
        .expect("an unresolvable name does not stop the client from being built");

    let started = Instant::now();
    assert_eq!(bounded(client.token_for_read(SCOPE, "k", &[])).await, None);
    assert!(!bounded(client.record_write(SCOPE, "k", &token(1))).await);
    let raw = bounded(client.get_token(SCOPE, "k", &[])).await;
    assert!(
        matches!(raw, Err(ClientError::NotResolved { .. })),
        "{raw:?}"
    );
    assert!(
        started.elapsed() < deadline / 2,
        "failed fast: {:?}",
        started.elapsed()
    );
    let stats = client.stats();
    assert_eq!((stats.read_failures, stats.write_failures), (1, 1));
    assert!(stats.resolution_failures >= 1, "{stats:?}");
    assert_eq!(stats.endpoints, 0);

    // The brokers come up.
    dns.answer(Some(vec![a.addr()]));
    assert_eq!(bounded(client.refresh_endpoints()).await.unwrap(), 1);
    assert!(bounded(client.record_write(SCOPE, "k", &token(1))).await);
    assert_eq!(
        bounded(client.token_for_read(SCOPE, "k", &[])).await,
        Some(token(1))
    );
}

#[tokio::test]
async fn the_background_task_re_resolves_on_its_own() {
    let a = KillableBroker::start(memory_store());
    let c = KillableBroker::start(memory_store());
    let dns = TestDns::new(Some(vec![a.addr()]));
    let client = TokenBrokerClient::new(dns.config(Duration::from_millis(10))).unwrap();
    assert!(bounded(client.record_write(SCOPE, "k", &token(1))).await);
    assert_eq!(client.endpoints(), [a.url()]);

    dns.answer(Some(vec![c.addr()]));
    // Lookup n+1 starts only after lookup n's answer was applied (see TestDns::resolver).
    dns.wait_for_lookups(dns.lookups() + 2).await;

    assert_eq!(client.endpoints(), [c.url()]);
    assert!(bounded(client.record_write(SCOPE, "moved0", &token(2))).await);
    assert_eq!(stored_on(&c, "moved", 1).await, 1);
}

#[tokio::test]
async fn the_system_resolver_finds_a_broker_on_localhost() {
    let broker = KillableBroker::start(memory_store());
    let port = broker.addr().port();
    let client = TokenBrokerClient::new(
        ClientConfig::discover(format!("http://localhost:{port}")).with_deadline(TEST_DEADLINE),
    )
    .unwrap();

    // No refresh_endpoints: the first call resolves (a real, asynchronous lookup) and waits.
    assert!(bounded(client.record_write(SCOPE, "k", &token(7))).await);
    assert_eq!(
        bounded(client.token_for_read(SCOPE, "k", &[])).await,
        Some(token(7))
    );
    let endpoints = client.endpoints();
    assert!(
        endpoints.contains(&format!("http://127.0.0.1:{port}")),
        "{endpoints:?}"
    );
    assert!(
        endpoints
            .iter()
            .all(|url| url.ends_with(&format!(":{port}"))),
        "every address keeps the port asked for: {endpoints:?}"
    );
}

#[tokio::test]
async fn dropping_the_last_clone_stops_the_re_resolution() {
    let a = KillableBroker::start(memory_store());
    // The resolver holds `alive`. The background task holds the resolver (through the
    // endpoints) for as long as it runs, so `alive` is dropped only once the task has stopped
    // and the client is gone. Re-resolving every 10 ms: the task is busy, not idle.
    let (alive, mut resolver_dropped) = oneshot::channel::<()>();
    let resolver = move |_host: String, _port: u16| {
        let _held = &alive;
        let answer = vec![a.addr()];
        async move { Ok(answer) }
    };
    let client = TokenBrokerClient::new(
        ClientConfig::discover_with(
            Discovery::new(TARGET)
                .with_interval(Duration::from_millis(10))
                .with_resolver(resolver),
        )
        .with_deadline(TEST_DEADLINE),
    )
    .unwrap();
    assert!(bounded(client.record_write(SCOPE, "k0", &token(0))).await);

    let clone = client.clone();
    drop(client);
    // A call on the remaining clone (real I/O, so the runtime gets to run any abort).
    assert!(bounded(clone.record_write(SCOPE, "k1", &token(1))).await);
    assert_eq!(
        resolver_dropped.try_recv(),
        Err(oneshot::error::TryRecvError::Empty),
        "a clone is still alive, so is the task"
    );

    drop(clone);
    assert!(
        bounded(resolver_dropped).await.is_err(),
        "the task stopped and let go of the resolver"
    );
}
