//! Property tests: the algebra the broker relies on (a stored token never goes backwards no
//! matter the order in which callers and replicas merge), the parser's round trip over the whole
//! signed 64-bit range, and headers that name a range more than once.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use session_token::{
    Field, MergeError, ParseError, ParseErrorKind, PartitionToken, PkRangeId, SessionToken,
    VectorToken,
};

/// LSNs that exercise the edges: -1, small numbers of both signs (frequent ties, and negatives
/// whose longer text is the smaller number), values beyond 2^53 either side of zero, both ends
/// of the 64-bit range, and anything in between.
fn lsn() -> impl Strategy<Value = i64> {
    prop_oneof![
        Just(-1i64),
        -20i64..20,
        (1i64 << 53)..(1i64 << 53) + 20,
        -(1i64 << 53) - 20..-(1i64 << 53),
        (i64::MAX - 20)..=i64::MAX,
        i64::MIN..=i64::MIN + 20,
        any::<i64>(),
    ]
}

/// Versions: mostly a few small ones of both signs (so that pairs often share a version), and
/// both ends of the 64-bit range.
fn version() -> impl Strategy<Value = i64> {
    prop_oneof![6 => -3i64..4, 1 => Just(i64::MIN), 1 => Just(i64::MAX)]
}

/// Region ids per version of a partition. In a real account the region set changes only with
/// topology changes, and a region that leaves does not come back under the same id: each
/// region's presence is a contiguous run of versions. Under that condition the SDK merge is
/// associative (see `region_that_returns_breaks_associativity_but_not_coverage` for the case
/// outside it). Range "a" models a single-region account: no regions at any version.
fn regions_of(range: &str, version: i64) -> Vec<u32> {
    if range == "a" {
        return vec![];
    }
    match version {
        v if v < 0 => vec![0],
        0 | 1 => vec![0, 1],
        2 => vec![1, 2],
        _ => vec![1, 2, 4_000_000_000],
    }
}

fn vector_token(range: String) -> impl Strategy<Value = PartitionToken> {
    version().prop_flat_map(move |version| {
        let ids = regions_of(&range, version);
        (lsn(), proptest::collection::vec(lsn(), ids.len())).prop_map(move |(global, lsns)| {
            PartitionToken::Vector(VectorToken {
                version,
                global_lsn: global,
                regions: ids.iter().copied().zip(lsns).collect(),
            })
        })
    })
}

/// The token of one range: range "9" carries simple (pre-2018) tokens, the others vector tokens.
fn segment_of(id: String) -> BoxedStrategy<(PkRangeId, PartitionToken)> {
    let range = PkRangeId::new(&id).unwrap();
    if id == "9" {
        lsn()
            .prop_map(move |l| (range.clone(), PartitionToken::Simple(l)))
            .boxed()
    } else {
        (Just(range), vector_token(id)).boxed()
    }
}

/// Ranges 0..=5 and "a" carry vector tokens; range "9" carries simple (pre-2018) tokens.
fn segment() -> impl Strategy<Value = (PkRangeId, PartitionToken)> {
    prop_oneof![
        4 => prop_oneof![(0u8..6).prop_map(|i| i.to_string()), Just("a".to_string())]
            .prop_flat_map(segment_of),
        1 => Just("9".to_string()).prop_flat_map(segment_of),
    ]
}

/// Segments over few ranges, so that a header of them names most ranges more than once.
fn repeated_segments() -> impl Strategy<Value = Vec<(PkRangeId, PartitionToken)>> {
    let id = prop_oneof![
        (0u8..2).prop_map(|i| i.to_string()),
        Just("a".to_string()),
        Just("9".to_string()),
    ];
    proptest::collection::vec(id.prop_flat_map(segment_of), 2..10)
}

/// Joins segments into a header value as written, in the given order, repeats included.
fn header(segments: &[(PkRangeId, PartitionToken)]) -> String {
    let texts: Vec<String> = segments.iter().map(|(id, t)| format!("{id}:{t}")).collect();
    texts.join(",")
}

/// One-segment tokens written by hand: ranges 0..=2, versions and LSNs of both signs, random
/// region sets (so that two of them for one range sometimes do not merge).
const LOOSE_SEGMENT: &str = "[0-2]:-?[0-3]#-?[0-9]{1,3}(#[0-3]=-?[0-9]{1,2}){0,3}";

fn token() -> impl Strategy<Value = SessionToken> {
    proptest::collection::vec(segment(), 1..5)
        .prop_map(|segs| SessionToken::from_segments(segs).unwrap())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn format_then_parse_round_trips(t in token()) {
        let text = t.to_string();
        let back = SessionToken::parse(&text).unwrap();
        prop_assert_eq!(&back, &t);
        prop_assert_eq!(back.to_string(), text);
    }

    /// Every signed 64-bit value, in every field that holds one, parses as itself and formats
    /// back to the same text; leading zeros are accepted and dropped.
    #[test]
    fn every_i64_parses_and_formats_as_itself(
        n in any::<i64>(), m in lsn(), zeros in 1usize..4,
    ) {
        let text = format!("0:{n}#{m}#1={n}#2={m},1:{m}");
        let t = SessionToken::parse(&text).unwrap();
        let expected = VectorToken {
            version: n,
            global_lsn: m,
            regions: [(1, n), (2, m)].into_iter().collect(),
        };
        prop_assert_eq!(t.get("0"), Some(&PartitionToken::Vector(expected)));
        prop_assert_eq!(t.get("1"), Some(&PartitionToken::Simple(m)));
        prop_assert_eq!(t.to_string(), text);
        let sign = if n < 0 { "-" } else { "" };
        let padded = format!("{sign}{}{}", "0".repeat(zeros), n.unsigned_abs());
        let t = SessionToken::parse(&format!("7:{padded}#{padded}")).unwrap();
        prop_assert_eq!(t.to_string(), format!("7:{n}#{n}"));
    }

    /// Numbers beyond 64 bits, negative zeros and stray signs are rejected, naming the segment
    /// and the field.
    #[test]
    fn numbers_outside_i64_and_odd_signs_are_rejected(
        over in prop_oneof![
            (i128::from(i64::MAX) + 1)..=i128::MAX,
            i128::MIN..i128::from(i64::MIN),
        ],
        zeros in 1usize..4,
        slot in 0usize..4,
    ) {
        let fields = [Field::SimpleLsn, Field::Version, Field::GlobalLsn, Field::RegionLsn];
        let place = |n: &str| match slot {
            0 => format!("3:1,4:{n}"),
            1 => format!("3:1,4:{n}#5"),
            2 => format!("3:1,4:5#{n}"),
            _ => format!("3:1,4:5#6#1={n}"),
        };
        let field = fields[slot];
        let check = |n: String, want: fn(&ParseErrorKind) -> Option<Field>| {
            let text = place(&n);
            match SessionToken::parse(&text) {
                Err(ParseError::Segment { index: 1, kind, .. }) if want(&kind) == Some(field) => {
                    Ok(())
                }
                other => Err(TestCaseError::fail(format!("{text}: {other:?}"))),
            }
        };
        check(over.to_string(), |k| match k {
            ParseErrorKind::OutOfRange { field, .. } => Some(*field),
            _ => None,
        })?;
        check(format!("-{}", "0".repeat(zeros)), |k| match k {
            ParseErrorKind::NegativeZero { field, .. } => Some(*field),
            _ => None,
        })?;
        for odd in [format!("+{zeros}"), format!("--{zeros}"), format!("{zeros}-"), "-".into()] {
            check(odd, |k| match k {
                ParseErrorKind::NotANumber { field, .. } => Some(*field),
                _ => None,
            })?;
        }
    }

    /// Simple tokens merge by the signed maximum, whatever the signs and lengths of the texts.
    #[test]
    fn simple_tokens_merge_by_signed_maximum(a in lsn(), b in lsn()) {
        let merged = SessionToken::parse(&format!("0:{a}"))
            .unwrap()
            .merge(&SessionToken::parse(&format!("0:{b}")).unwrap())
            .unwrap();
        prop_assert_eq!(merged.to_string(), format!("0:{}", a.max(b)));
    }

    /// A header that names ranges more than once (as tools that concatenate headers write it)
    /// parses as the merge of its segments, and formats with one segment per range.
    #[test]
    fn repeated_ranges_parse_as_the_merge_of_their_segments(segs in repeated_segments()) {
        let text = header(&segs);
        let singles: Vec<SessionToken> = segs
            .iter()
            .map(|s| SessionToken::from_segments([s.clone()]).unwrap())
            .collect();
        let expected = SessionToken::merge_all(&singles).unwrap().unwrap();
        let parsed = SessionToken::parse(&text).unwrap();
        prop_assert_eq!(&parsed, &expected, "header {}", text);
        let ranges: BTreeSet<&PkRangeId> = segs.iter().map(|(id, _)| id).collect();
        prop_assert_eq!(parsed.len(), ranges.len());
        // Every segment as written is covered by the parsed token.
        for single in &singles {
            prop_assert!(single.is_covered_by(&parsed), "{} not covered by {}", single, parsed);
        }
        // Written in any other order, the same segments parse to the same token.
        let mut reversed = segs.clone();
        reversed.reverse();
        prop_assert_eq!(SessionToken::parse(&header(&reversed)).unwrap(), parsed);
    }

    /// Two headers joined by a comma parse as their merge; when a shared range does not merge,
    /// the joined header fails at the second segment with the merge's own error.
    #[test]
    fn joined_headers_parse_as_their_merge(a in LOOSE_SEGMENT, b in LOOSE_SEGMENT) {
        let (Ok(ta), Ok(tb)) = (SessionToken::parse(&a), SessionToken::parse(&b)) else {
            return Ok(());
        };
        let joined = SessionToken::parse(&format!("{a},{b}"));
        match ta.merge(&tb) {
            Ok(merged) => prop_assert_eq!(joined, Ok(merged)),
            Err(e) => prop_assert_eq!(
                joined,
                Err(ParseError::Segment {
                    index: 1,
                    segment: b.clone(),
                    kind: ParseErrorKind::DuplicateRangeConflict(e),
                })
            ),
        }
    }

    #[test]
    fn merge_is_commutative(a in token(), b in token()) {
        prop_assert_eq!(a.merge(&b).unwrap(), b.merge(&a).unwrap());
    }

    #[test]
    fn merge_is_associative(a in token(), b in token(), c in token()) {
        let left = a.merge(&b).unwrap().merge(&c).unwrap();
        let right = a.merge(&b.merge(&c).unwrap()).unwrap();
        prop_assert_eq!(left.to_string(), right.to_string());
        prop_assert_eq!(left, right);
    }

    #[test]
    fn merge_is_idempotent(a in token(), b in token()) {
        prop_assert_eq!(a.merge(&a).unwrap(), a.clone());
        let ab = a.merge(&b).unwrap();
        prop_assert_eq!(ab.merge(&b).unwrap(), ab.clone());
    }

    #[test]
    fn merge_result_covers_both_inputs(a in token(), b in token()) {
        let ab = a.merge(&b).unwrap();
        prop_assert!(a.is_covered_by(&ab), "{} not covered by {}", a, ab);
        prop_assert!(b.is_covered_by(&ab), "{} not covered by {}", b, ab);
    }

    /// What the broker promises: folding Puts in any order ends at the same stored token, and
    /// every intermediate stored token is covered by every later one.
    #[test]
    fn stored_token_never_goes_backwards(puts in proptest::collection::vec(token(), 1..8)) {
        let mut stored: Option<SessionToken> = None;
        for put in &puts {
            let next = match &stored { None => put.clone(), Some(s) => s.merge(put).unwrap() };
            if let Some(prev) = &stored {
                prop_assert!(prev.is_covered_by(&next));
            }
            prop_assert!(put.is_covered_by(&next));
            stored = Some(next);
        }
        let mut reversed = puts.clone();
        reversed.reverse();
        prop_assert_eq!(stored, SessionToken::merge_all(&reversed).unwrap());
    }

    /// The other side of the region rule: same version, different regions fails in both orders
    /// and names the range.
    #[test]
    fn region_mismatch_fails_symmetrically(
        version in version(), g1 in lsn(), g2 in lsn(),
        r1 in proptest::collection::btree_map(0u32..4, lsn(), 0..3),
        r2 in proptest::collection::btree_map(0u32..4, lsn(), 0..3),
    ) {
        let a = VectorToken { version, global_lsn: g1, regions: r1.clone() };
        let b = VectorToken { version, global_lsn: g2, regions: r2.clone() };
        let same: bool = r1.keys().eq(r2.keys());
        let ab = a.merge(&b, "5");
        let ba = b.merge(&a, "5");
        prop_assert_eq!(ab.is_ok(), same);
        prop_assert_eq!(ba.is_ok(), same);
        if !same {
            let names_range = matches!(&ab, Err(MergeError::RegionSetMismatch { range, .. }) if range == "5");
            prop_assert!(names_range, "unexpected error {:?}", ab);
            prop_assert!(!a.is_covered_by(&b));
        }
    }

    /// Arbitrary bytes never panic the parser, and whatever parses formats canonically.
    #[test]
    fn parse_never_panics(s in "[0-9a-z:#=,\\-+ ]{0,40}") {
        if let Ok(t) = SessionToken::parse(&s) {
            let canon = t.to_string();
            prop_assert_eq!(SessionToken::parse(&canon).unwrap(), t);
        }
    }

    /// Merging arbitrary parsed tokens (consistent or not) either fails or covers both.
    #[test]
    fn arbitrary_merges_fail_cleanly_or_cover(a in LOOSE_SEGMENT, b in LOOSE_SEGMENT) {
        let (Ok(a), Ok(b)) = (SessionToken::parse(&a), SessionToken::parse(&b)) else { return Ok(()) };
        match (a.merge(&b), b.merge(&a)) {
            (Ok(ab), Ok(ba)) => {
                prop_assert_eq!(&ab, &ba);
                prop_assert!(a.is_covered_by(&ab) && b.is_covered_by(&ab));
            }
            (Err(_), Err(_)) => {}
            (x, y) => prop_assert!(false, "asymmetric merge: {:?} / {:?}", x, y),
        }
    }
}

#[test]
fn region_sets_are_compared_not_their_order() {
    let a = SessionToken::parse("0:1#5#2=1#1=1").unwrap();
    let b = SessionToken::parse("0:1#5#1=1#2=1").unwrap();
    assert_eq!(a, b);
    let regions: BTreeMap<u32, i64> = [(1, 1), (2, 1)].into_iter().collect();
    assert!(matches!(a.get("0"), Some(PartitionToken::Vector(v)) if v.regions == regions));
}

/// Outside the contiguous-region condition the SDK rule is not associative: region 0 exists at
/// versions -1 and 1 but not at 0, so its LSN from version -1 survives one fold order and is
/// dropped by the other. Both results still cover every input, which is what read-your-writes
/// needs; the broker folds Puts in arrival order, so it stores one of these covering tokens.
#[test]
fn region_that_returns_breaks_associativity_but_not_coverage() {
    let a = SessionToken::parse("0:1#5#0=1#1=1").unwrap();
    let b = SessionToken::parse("0:0#5").unwrap();
    let c = SessionToken::parse("0:-1#5#0=7").unwrap();
    let left = a.merge(&b).unwrap().merge(&c).unwrap();
    let right = a.merge(&b.merge(&c).unwrap()).unwrap();
    assert_eq!(left.to_string(), "0:1#5#0=7#1=1");
    assert_eq!(right.to_string(), "0:1#5#0=1#1=1");
    for result in [&left, &right] {
        for input in [&a, &b, &c] {
            assert!(
                input.is_covered_by(result),
                "{input} not covered by {result}"
            );
        }
    }
}
