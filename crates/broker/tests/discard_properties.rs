//! Property tests of the DiscardToken rule (`storage::discard`): it removes exactly the stored
//! segments at or ahead of the failed ones and leaves the others untouched, it is idempotent,
//! and "ahead" survives merging in newer tokens (anything at least as far ahead as an
//! unservable segment is equally unservable, so a put after the discard cannot hide it).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;

use broker::storage::discard::{apply, is_at_least_as_far_ahead};
use proptest::prelude::*;
use session_token::{PartitionToken, PkRangeId, SessionToken, VectorToken};

fn vector() -> impl Strategy<Value = PartitionToken> {
    (
        -2i64..3,
        -3i64..6,
        proptest::collection::btree_map(0u32..3, -3i64..6, 0..3),
    )
        .prop_map(|(version, global_lsn, regions)| {
            PartitionToken::Vector(VectorToken {
                version,
                global_lsn,
                regions,
            })
        })
}

fn partition() -> impl Strategy<Value = PartitionToken> {
    prop_oneof![4 => vector(), 1 => (-3i64..6).prop_map(PartitionToken::Simple)]
}

/// A stored segment and a failed one it is at or ahead of: the failed one lowered from it (an
/// older version, or the same version with a lower global LSN and lower or missing regions).
fn condemned_pair() -> impl Strategy<Value = (PartitionToken, PartitionToken)> {
    (
        partition(),
        0i64..3,
        any::<bool>(),
        proptest::collection::vec((0i64..3, any::<bool>()), 3),
    )
        .prop_map(|(stored, down, older_version, per_region)| {
            let failed = match &stored {
                PartitionToken::Simple(lsn) => PartitionToken::Simple(lsn - down),
                PartitionToken::Vector(v) if older_version => PartitionToken::Vector(VectorToken {
                    version: v.version - 1,
                    global_lsn: v.global_lsn + 7,
                    regions: v.regions.iter().map(|(r, l)| (*r, l + 7)).collect(),
                }),
                PartitionToken::Vector(v) => PartitionToken::Vector(VectorToken {
                    version: v.version,
                    global_lsn: v.global_lsn - down,
                    regions: v
                        .regions
                        .iter()
                        .zip(&per_region)
                        .filter(|(_, (_, keep))| *keep)
                        .map(|((r, l), (d, _))| (*r, l - d))
                        .collect(),
                }),
            };
            (stored, failed)
        })
}

fn token() -> impl Strategy<Value = SessionToken> {
    proptest::collection::btree_map(0u8..5, partition(), 1..5).prop_map(|segments| {
        SessionToken::from_segments(
            segments
                .into_iter()
                .map(|(id, t)| (PkRangeId::new(&id.to_string()).unwrap(), t)),
        )
        .unwrap()
    })
}

fn by_id(token: &SessionToken) -> BTreeMap<String, PartitionToken> {
    token
        .segments()
        .map(|(id, t)| (id.as_str().to_owned(), t.clone()))
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn removes_exactly_the_segments_at_or_ahead(stored in token(), failed in token()) {
        let discarded = apply(&stored, &failed);
        let stored_ids = by_id(&stored);
        let failed_ids = by_id(&failed);
        let remaining = discarded.remaining.as_ref().map(by_id).unwrap_or_default();
        let removed: Vec<String> =
            discarded.removed.iter().map(|r| r.as_str().to_owned()).collect();
        for (id, segment) in &stored_ids {
            let condemned = failed_ids
                .get(id)
                .is_some_and(|f| is_at_least_as_far_ahead(segment, f));
            prop_assert_eq!(removed.contains(id), condemned, "range {}", id);
            if !condemned {
                prop_assert_eq!(remaining.get(id), Some(segment), "range {} changed", id);
            }
        }
        prop_assert_eq!(removed.len() + remaining.len(), stored_ids.len());
        if let Some(rest) = &discarded.remaining {
            prop_assert!(apply(rest, &failed).removed.is_empty(), "not idempotent");
        }
    }

    #[test]
    fn what_merges_over_a_condemned_segment_is_condemned_too(
        (stored, failed) in condemned_pair(), newer in partition()
    ) {
        prop_assert!(is_at_least_as_far_ahead(&stored, &failed));
        if let Ok(merged) = stored.merge(&newer, "0") {
            prop_assert!(is_at_least_as_far_ahead(&merged, &failed), "{:?}", merged);
        }
    }

    #[test]
    fn a_segment_is_at_least_as_far_ahead_as_itself(segment in partition()) {
        prop_assert!(is_at_least_as_far_ahead(&segment, &segment));
    }
}
