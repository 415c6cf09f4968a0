//! The store behaviour suite against real Redis, stamped for every variant (one instance; a pair
//! reading both or the primary; `rediss://`), as it is for the in-memory store
//! (crates/broker/tests/memory_store.rs); plus what only Redis has: the key layout, TTLs,
//! NOSCRIPT, authentication, compare-and-set races, command errors.

use std::sync::Arc;
use std::time::Duration;

use broker::storage::behaviour;
use broker::storage::redis::{ReadMode, RedisOptions, RedisStore, RedisUrl};
use broker::{PutParams, SessionToken, StoreKey, TokenStore};
use redis::Commands;

use crate::support::redis::RedisServer;
use crate::support::stores::{TTL, ready_store, redis_options, wait_for};

/// The store variants the behaviour suite runs against.
#[derive(Debug, Clone, Copy)]
enum Variant {
    /// One instance, no fallback.
    PrimaryOnly,
    /// A primary and a fallback, reads merging both (the default).
    PairMergeReads,
    /// A primary and a fallback, reads from the primary (`redis.read_mode = "primary"`).
    PairPrimaryReads,
    /// One instance over TLS only (`rediss://`, verified against `redis.ca_file`).
    Tls,
    /// A Redis Cluster (3 masters, a replica each) as the only instance (`redis+cluster://`).
    Cluster,
    /// A Redis Cluster as the primary, a standalone Redis as the fallback.
    ClusterAndFallback,
    /// A master that Redis Sentinel manages (`redis+sentinel://`), with a standalone fallback.
    SentinelAndFallback,
}

/// A store of `variant` on its own redis-server processes, ready.
struct Fixture {
    store: RedisStore,
    _servers: Vec<RedisServer>,
    _certificates: Option<tempfile::TempDir>,
}

async fn fixture(variant: Variant) -> Fixture {
    // The behaviour checks are not fault tests: a generous deadline keeps 64 concurrent
    // callers on a loaded 2-core machine from timing out.
    let generous = |options: RedisOptions| RedisOptions {
        operation_timeout: Duration::from_secs(2),
        connect_timeout: Duration::from_secs(2),
        ..options
    };
    let (options, servers, certificates) = match variant {
        Variant::SentinelAndFallback => {
            let fallback = RedisServer::start();
            let mut options = redis_options(&fallback, Some(&fallback));
            options.primary_url =
                Some(RedisUrl::parse(&crate::support::cluster::shared_sentinel().url()).unwrap());
            options.namespace = crate::support::cluster::namespace();
            (options, vec![fallback], None)
        }
        Variant::Cluster | Variant::ClusterAndFallback => {
            let fallback = RedisServer::start();
            let mut options = redis_options(&fallback, None);
            options.primary_url =
                Some(RedisUrl::parse(&crate::support::cluster::shared().url()).unwrap());
            // The cluster is shared by the tests of this binary: a namespace each.
            options.namespace = crate::support::cluster::namespace();
            if matches!(variant, Variant::ClusterAndFallback) {
                options.fallback_url = Some(RedisUrl::parse(&fallback.url()).unwrap());
            }
            (options, vec![fallback], None)
        }
        Variant::PrimaryOnly => {
            let primary = RedisServer::start();
            (redis_options(&primary, None), vec![primary], None)
        }
        Variant::PairMergeReads | Variant::PairPrimaryReads => {
            let (primary, fallback) = (RedisServer::start(), RedisServer::start());
            let mut options = redis_options(&primary, Some(&fallback));
            if matches!(variant, Variant::PairPrimaryReads) {
                options.read_mode = ReadMode::Primary;
            }
            (options, vec![primary, fallback], None)
        }
        Variant::Tls => {
            let dir = tempfile::tempdir().unwrap();
            crate::support::redis::write_test_certificates(dir.path());
            let server = RedisServer::start_tls(dir.path());
            let options = RedisOptions {
                primary_url: Some(
                    RedisUrl::parse(&format!("rediss://localhost:{}", server.port())).unwrap(),
                ),
                ca_file: Some(dir.path().join("ca.pem")),
                ..redis_options(&server, None)
            };
            (options, vec![server], Some(dir))
        }
    };
    Fixture {
        store: ready_store(&generous(options)).await,
        _servers: servers,
        _certificates: certificates,
    }
}

/// Stamps the whole behaviour suite (`broker::storage::behaviour`) for one store variant.
macro_rules! suite_against {
    ($module:ident, $variant:expr) => {
        mod $module {
            use super::*;

            #[tokio::test]
            async fn put_then_get_returns_canonical_token() {
                let f = fixture($variant).await;
                behaviour::put_then_get_returns_canonical_token(&f.store).await;
            }
            #[tokio::test]
            async fn stored_token_never_goes_backwards() {
                let f = fixture($variant).await;
                behaviour::stored_token_never_goes_backwards(&f.store).await;
            }
            #[tokio::test]
            async fn lsns_above_2_pow_53_keep_every_digit() {
                let f = fixture($variant).await;
                behaviour::lsns_above_2_pow_53_keep_every_digit(&f.store).await;
            }
            #[tokio::test]
            async fn conflicting_put_leaves_stored_token_unchanged() {
                let f = fixture($variant).await;
                behaviour::conflicting_put_leaves_stored_token_unchanged(&f.store).await;
            }
            #[tokio::test]
            async fn segment_limit_applies_to_the_merged_token() {
                let f = fixture($variant).await;
                behaviour::segment_limit_applies_to_the_merged_token(&f.store).await;
            }
            #[tokio::test]
            async fn keys_and_scopes_do_not_collide() {
                let f = fixture($variant).await;
                behaviour::keys_and_scopes_do_not_collide(&f.store).await;
            }
            #[tokio::test]
            async fn ttl_expires_and_every_put_refreshes_it() {
                let f = fixture($variant).await;
                behaviour::ttl_expires_and_every_put_refreshes_it(&f.store).await;
            }
            #[tokio::test]
            async fn discard_removes_segments_at_or_ahead_of_the_failed_token() {
                let f = fixture($variant).await;
                behaviour::discard_removes_segments_at_or_ahead_of_the_failed_token(&f.store).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn discards_racing_with_puts_lose_no_put() {
                let f = fixture($variant).await;
                behaviour::discards_racing_with_puts_lose_no_put(Arc::new(f.store)).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn concurrent_puts_lose_nothing() {
                let f = fixture($variant).await;
                behaviour::concurrent_puts_lose_nothing(Arc::new(f.store), 64, 25).await;
            }
        }
    };
}

suite_against!(primary_only, Variant::PrimaryOnly);
suite_against!(primary_and_fallback, Variant::PairMergeReads);
suite_against!(
    primary_and_fallback_primary_reads,
    Variant::PairPrimaryReads
);
suite_against!(rediss, Variant::Tls);
suite_against!(cluster, Variant::Cluster);
suite_against!(cluster_and_fallback, Variant::ClusterAndFallback);
suite_against!(sentinel_and_fallback, Variant::SentinelAndFallback);

fn t(s: &str) -> SessionToken {
    SessionToken::parse(s).unwrap()
}

fn params(ttl: Duration) -> PutParams {
    PutParams {
        ttl,
        max_segments: 16,
    }
}

/// Concurrent puts to one key race their compare-and-sets: the losers merge again (counted),
/// and after three losses in a row take the merge script; nothing is lost either way.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hot_key_races_compare_and_sets_and_loses_no_update() {
    let primary = RedisServer::start();
    let options = RedisOptions {
        operation_timeout: Duration::from_secs(2),
        ..redis_options(&primary, None)
    };
    let store = Arc::new(ready_store(&options).await);
    behaviour::concurrent_puts_lose_nothing(store.clone(), 32, 20).await;
    let conflicts = store
        .primary()
        .stats
        .cas_conflicts
        .load(std::sync::atomic::Ordering::Relaxed);
    assert!(conflicts > 0, "32 writers on one key never raced");
    let stats = redis::cmd("INFO")
        .arg("commandstats")
        .query::<String>(&mut primary.connection())
        .unwrap();
    assert!(
        stats.contains("cmdstat_evalsha:calls="),
        "no compare-and-set ran: {stats}"
    );
}

#[tokio::test]
async fn layout_is_versioned_with_ttl_and_copied_to_the_fallback() {
    let primary = RedisServer::start();
    let fallback = RedisServer::start();
    let store = ready_store(&redis_options(&primary, Some(&fallback))).await;
    let key = StoreKey::new("acct/db/c", "user|1");
    store.put(&key, &t("0:1#5#1=2"), params(TTL)).await.unwrap();
    store.flush_copies().await;

    let redis_key = "tb:v1:{acct/db/c|user%7C1}";
    assert_eq!(store.redis_key(&key), redis_key);
    for server in [&primary, &fallback] {
        let mut c = server.connection();
        let value: String = c.get(redis_key).unwrap();
        assert_eq!(value, "0:1#5#1=2");
        let pttl: i64 = c.pttl(redis_key).unwrap();
        assert!(pttl > 3_500_000 && pttl <= 3_600_000, "pttl {pttl}");
    }
    assert_eq!(
        store
            .stats()
            .copies_done
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
}

#[tokio::test]
async fn noscript_after_script_flush_is_handled() {
    let primary = RedisServer::start();
    let store = ready_store(&redis_options(&primary, None)).await;
    let key = StoreKey::new("s", "k");
    store.put(&key, &t("0:1#1"), params(TTL)).await.unwrap();
    let _: () = redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query(&mut primary.connection())
        .unwrap();
    let stored = store.put(&key, &t("0:1#2"), params(TTL)).await.unwrap();
    assert_eq!(stored, t("0:1#2"));
}

#[tokio::test]
async fn a_garbage_value_in_redis_is_ignored_on_read_and_replaced_on_put() {
    let primary = RedisServer::start();
    let store = ready_store(&redis_options(&primary, None)).await;
    let key = StoreKey::new("s", "k");
    let _: () = primary
        .connection()
        .set(store.redis_key(&key), "not a token")
        .unwrap();
    assert_eq!(store.get(&key).await.unwrap().token, None);
    let stored = store.put(&key, &t("0:1#2"), params(TTL)).await.unwrap();
    assert_eq!(stored, t("0:1#2"));
}

#[tokio::test]
async fn acl_password_in_the_url_authenticates_and_a_wrong_one_is_not_ready() {
    let primary = RedisServer::start_with(&["--requirepass", "s3cret"]);
    let good = RedisOptions {
        primary_url: Some(
            RedisUrl::parse(&format!(
                "redis://default:s3cret@127.0.0.1:{}",
                primary.port()
            ))
            .unwrap(),
        ),
        ..redis_options(&primary, None)
    };
    let store = ready_store(&good).await;
    store
        .put(&StoreKey::new("s", "k"), &t("0:1#1"), params(TTL))
        .await
        .unwrap();
    assert!(!store.describe().contains("s3cret"), "{}", store.describe());

    let bad = RedisOptions {
        primary_url: Some(
            RedisUrl::parse(&format!(
                "redis://default:wrong@127.0.0.1:{}",
                primary.port()
            ))
            .unwrap(),
        ),
        ..redis_options(&primary, None)
    };
    let store = RedisStore::start(&bad, TTL).unwrap();
    let err = store
        .put(&StoreKey::new("s", "k"), &t("0:1#1"), params(TTL))
        .await
        .unwrap_err();
    assert!(matches!(err, broker::StoreError::Unavailable(_)), "{err:?}");
    assert!(!err.to_string().contains("wrong@"), "{err}");
    assert!(!*store.ready().borrow());
}

#[tokio::test]
async fn store_starts_with_redis_down_and_becomes_ready_when_it_answers() {
    let mut primary = RedisServer::start();
    let options = redis_options(&primary, None);
    primary.kill();
    let store = RedisStore::start(&options, TTL).unwrap();
    assert!(!*store.ready().borrow());
    primary.restart();
    wait_for(store.ready(), true).await;
    store
        .put(&StoreKey::new("s", "k"), &t("0:1#1"), params(TTL))
        .await
        .unwrap();
}

/// An error the command itself causes (here WRONGTYPE: something else stored a hash under the
/// token's key) fails that call with an internal error and leaves the instance up: the breaker
/// is not fed and the put does not fail over, since the fallback would be just as wrong to use.
#[tokio::test]
async fn a_command_error_fails_the_call_and_leaves_the_instance_up() {
    let primary = RedisServer::start();
    let fallback = RedisServer::start();
    let store = ready_store(&redis_options(&primary, Some(&fallback))).await;
    let key = StoreKey::new("acct/db/c", "a-hash");
    let _: () = primary
        .connection()
        .hset(store.redis_key(&key), "field", "value")
        .unwrap();
    for _ in 0..5 {
        let error = store.put(&key, &t("0:1#1"), params(TTL)).await.unwrap_err();
        assert!(
            matches!(error, broker::StoreError::Internal(_)),
            "{error:?}"
        );
    }
    assert_eq!(store.primary().breaker_state(), "closed");
    assert!(store.primary().is_up());
    let failovers = store
        .stats()
        .fallback_writes
        .load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(failovers, 0, "a command error failed over");
    store.flush_copies().await;
    let copied: Option<String> = fallback.connection().get(store.redis_key(&key)).unwrap();
    assert_eq!(copied, None);
    // Every other key is served as usual.
    let other = StoreKey::new("acct/db/c", "other");
    store.put(&other, &t("0:1#1"), params(TTL)).await.unwrap();
}
