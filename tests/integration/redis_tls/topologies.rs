//! `rediss+cluster://` and `rediss+sentinel://` end to end: the broker binary on a Redis Cluster
//! and on a Sentinel-managed master whose every node also serves TLS (the nodes talk TLS to each
//! other too), given only the TLS ports, with `redis.ca_file`; and the same topologies with a CA
//! that did not sign them, refused with the reason in the log.
//!
//! Why this proves TLS to every node: the URL names TLS ports only, and what the broker
//! discovers from there is TLS ports only (a cluster node answers `CLUSTER SLOTS` with the TLS
//! ports to a TLS client; the sentinels monitor the master's TLS port), so a plain connection
//! would reach nothing.

use std::path::Path;

use test_kit::{ClusterOptions, RedisCluster, RedisSentinel, SentinelOptions, TlsFiles};

use super::{file, start_broker_on};
use crate::support::redis::write_test_certificates;

/// A broker on `url` with the test CA puts and reads keys (on every master of a cluster); one
/// with a CA that did not sign the servers is refused, the log saying why.
async fn puts_and_gets_over_tls_only_with_the_right_ca(url: &str, dir: &Path) {
    let broker = start_broker_on(url, &[("TOKENBROKER_REDIS__CA_FILE", file(dir, "ca.pem"))]).await;
    broker.wait_ready().await;
    for i in 0..6 {
        broker.put_and_get(&format!("k{i}")).await;
    }
    let mut wrong = start_broker_on(
        url,
        &[("TOKENBROKER_REDIS__CA_FILE", file(dir, "other-ca.pem"))],
    )
    .await;
    let line = wrong.assert_refused().await;
    assert!(line.contains("UnknownIssuer"), "{line}");
    wrong.stop().await;
    broker.stop().await;
}

#[tokio::test]
async fn rediss_cluster_puts_and_gets_and_a_wrong_ca_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    write_test_certificates(dir.path());
    let cluster = RedisCluster::start_with(ClusterOptions {
        tls: Some(TlsFiles::in_dir(dir.path())),
        ..ClusterOptions::default()
    });
    eprintln!("TLS cluster started in {:?}", cluster.startup_time());
    puts_and_gets_over_tls_only_with_the_right_ca(&cluster.tls_url(), dir.path()).await;
}

#[tokio::test]
async fn rediss_sentinel_puts_and_gets_and_a_wrong_ca_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    write_test_certificates(dir.path());
    let sentinel = RedisSentinel::start_with(SentinelOptions {
        tls: Some(TlsFiles::in_dir(dir.path())),
        ..SentinelOptions::default()
    });
    eprintln!("TLS Sentinel set started in {:?}", sentinel.startup_time());
    puts_and_gets_over_tls_only_with_the_right_ca(&sentinel.tls_url(), dir.path()).await;
}
