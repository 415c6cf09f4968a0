//! The Redis merge script against the Rust merge: random token pairs through both must give
//! identical results (merged token or the same error), over the whole signed 64-bit range:
//! LSNs beyond ±2^53, negatives of every length (the script compares canonical decimal strings,
//! where a longer negative is the smaller number), and both ends of i64.

use broker::SessionToken;
use broker::storage::redis::{MERGE_SCRIPT_SOURCE, MergeReply, decode_merge_reply};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use session_token::{PartitionToken, PkRangeId, VectorToken};

use crate::support::redis::RedisServer;

fn lsn() -> impl Strategy<Value = i64> {
    prop_oneof![
        Just(-1i64),
        -12i64..12,
        (1i64 << 53) - 3..(1i64 << 53) + 3,
        -(1i64 << 53) - 3..-(1i64 << 53) + 3,
        (i64::MAX - 3)..=i64::MAX,
        i64::MIN..=i64::MIN + 3,
        any::<i64>(),
    ]
}

/// Versions: mostly a few small ones of both signs (pairs often share one: merges and region
/// conflicts), sometimes the ends of i64.
fn version() -> impl Strategy<Value = i64> {
    prop_oneof![8 => -3i64..3, 1 => Just(i64::MIN), 1 => Just(i64::MAX)]
}

/// Tokens drawn so that pairs often share ranges and versions (merges), and sometimes
/// disagree on regions or kinds (errors): both sides of every rule.
fn partition_token() -> impl Strategy<Value = PartitionToken> {
    prop_oneof![
        1 => lsn().prop_map(PartitionToken::Simple),
        6 => (version(), lsn(), proptest::collection::btree_map(
                prop_oneof![0u32..3, Just(u32::MAX)], lsn(), 0..3))
            .prop_map(|(version, global_lsn, regions)| PartitionToken::Vector(VectorToken {
                version, global_lsn, regions,
            })),
    ]
}

fn token() -> impl Strategy<Value = SessionToken> {
    let range = prop_oneof![
        (0u32..4).prop_map(|i| i.to_string()),
        Just("10".to_string()),
        Just("007".to_string()),
        Just("7".to_string()),
        Just("a_b".to_string()),
        Just("A-1".to_string()),
    ];
    proptest::collection::vec((range, partition_token()), 1..5).prop_map(|segs| {
        SessionToken::from_segments(
            segs.into_iter()
                .map(|(id, t)| (PkRangeId::new(&id).unwrap(), t)),
        )
        .unwrap()
    })
}

#[test]
fn lua_merge_matches_rust_merge_on_random_pairs() {
    let server = RedisServer::start();
    let conn = std::cell::RefCell::new(server.connection());
    let script = redis::Script::new(MERGE_SCRIPT_SOURCE);
    let mut runner = TestRunner::new(Config {
        cases: 1500,
        ..Config::default()
    });
    let outcomes = std::cell::RefCell::new([0usize; 3]);
    runner
        .run(&(token(), token()), |(stored, incoming)| {
            let mut conn = conn.borrow_mut();
            let conn = &mut *conn;
            let mut outcomes = outcomes.borrow_mut();
            let _: () = redis::cmd("DEL").arg("k").query(conn).unwrap();
            let first: redis::Value = script
                .key("k")
                .arg(stored.to_string())
                .arg(60_000)
                .arg(64)
                .invoke(conn)
                .unwrap();
            prop_assert_eq!(
                decode_merge_reply(&first).unwrap(),
                MergeReply::Merged {
                    token: stored.clone(),
                    replaced_corrupt: false
                }
            );
            let reply: redis::Value = script
                .key("k")
                .arg(incoming.to_string())
                .arg(60_000)
                .arg(4)
                .invoke(conn)
                .unwrap();
            let lua = decode_merge_reply(&reply).unwrap();
            let after: String = redis::cmd("GET").arg("k").query(conn).unwrap();
            match stored.merge(&incoming) {
                Ok(merged) if merged.len() > 4 => {
                    prop_assert_eq!(lua, MergeReply::TooManySegments(merged.len()));
                    prop_assert_eq!(after, stored.to_string());
                    outcomes[2] += 1;
                }
                Ok(merged) => {
                    prop_assert_eq!(&after, &merged.to_string(), "stored text differs");
                    prop_assert_eq!(
                        lua,
                        MergeReply::Merged {
                            token: merged,
                            replaced_corrupt: false
                        }
                    );
                    outcomes[0] += 1;
                }
                Err(e) => {
                    prop_assert_eq!(lua, MergeReply::Conflict(e));
                    prop_assert_eq!(
                        after,
                        stored.to_string(),
                        "a refused merge changed the value"
                    );
                    outcomes[1] += 1;
                }
            }
            Ok(())
        })
        .unwrap();
    // Both sides of the rules were exercised, not just the happy path.
    let outcomes = outcomes.into_inner();
    assert!(
        outcomes.iter().all(|n| *n > 20),
        "merged / refused / too many: {outcomes:?}"
    );
}
