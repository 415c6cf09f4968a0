//! A whole `x-ms-session-token` header value: the tokens of one or more partition key ranges.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use crate::parse::{self, ParseError};
use crate::partition::{MergeError, PartitionToken};
use crate::range_id::PkRangeId;

/// A session token header value, one token per partition key range.
///
/// Never empty. [`fmt::Display`] gives the canonical form; parsing it gives the same value back.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SessionToken {
    segments: BTreeMap<PkRangeId, PartitionToken>,
}

impl SessionToken {
    /// Parses a header value. See [`ParseError`] for what is rejected.
    ///
    /// Accepted as the .NET, Java and Python SDKs accept them: any signed 64-bit version or LSN
    /// (an optional `-`, then digits; leading zeros are dropped), a region id repeated within a
    /// token (the last value wins), and a range named by more than one segment (the segments
    /// are merged in header order, so `0:-1#105,0:-1#107` parses as `0:-1#107`; segments of one
    /// range that do not merge fail with [`ParseErrorKind::DuplicateRangeConflict`]).
    /// Rejected, with the segment and the field named: whitespace, `+`, a negative zero (`-0`),
    /// empty fields and segments, numbers outside 64 bits (region ids: 32 bits unsigned).
    ///
    /// [`ParseErrorKind::DuplicateRangeConflict`]: crate::ParseErrorKind::DuplicateRangeConflict
    pub fn parse(value: &str) -> Result<Self, ParseError> {
        parse::segments(value).map(|segments| Self { segments })
    }

    /// Builds a token from segments; `None` when there are none.
    pub fn from_segments(
        segments: impl IntoIterator<Item = (PkRangeId, PartitionToken)>,
    ) -> Option<Self> {
        let segments: BTreeMap<_, _> = segments.into_iter().collect();
        (!segments.is_empty()).then_some(Self { segments })
    }

    /// The segments, in canonical order.
    pub fn segments(&self) -> impl ExactSizeIterator<Item = (&PkRangeId, &PartitionToken)> {
        self.segments.iter()
    }

    /// Number of partition key ranges.
    pub fn len(&self) -> usize {
        self.segments.len()
    }

    /// Always false: a session token has at least one segment. Present for API symmetry.
    pub fn is_empty(&self) -> bool {
        self.segments.is_empty()
    }

    /// The token of one range.
    pub fn get(&self, range: &str) -> Option<&PartitionToken> {
        let id = PkRangeId::new(range).ok()?;
        self.segments.get(&id)
    }

    /// Merges two header values range by range: ranges in only one side are kept as they are,
    /// shared ranges merge by the partition rules. All or nothing: on error neither side is
    /// changed and the error names the first range that failed.
    pub fn merge(&self, other: &Self) -> Result<Self, MergeError> {
        let mut segments = self.segments.clone();
        for (id, token) in &other.segments {
            let merged = match segments.get(id) {
                Some(mine) => mine.merge(token, id.as_str())?,
                None => token.clone(),
            };
            segments.insert(id.clone(), merged);
        }
        Ok(Self { segments })
    }

    /// Merges any number of tokens; `None` for an empty input.
    pub fn merge_all<'a>(
        tokens: impl IntoIterator<Item = &'a SessionToken>,
    ) -> Result<Option<Self>, MergeError> {
        let mut acc: Option<Self> = None;
        for token in tokens {
            acc = Some(match acc {
                None => token.clone(),
                Some(a) => a.merge(token)?,
            });
        }
        Ok(acc)
    }

    /// True when `newer` is at least as recent as `self` for every range of `self`.
    pub fn is_covered_by(&self, newer: &Self) -> bool {
        self.segments.iter().all(|(id, token)| {
            newer
                .segments
                .get(id)
                .is_some_and(|n| token.is_covered_by(n))
        })
    }

    /// Keeps only the given ranges; `None` when none of them is present.
    pub fn filter<S: AsRef<str>>(&self, ranges: &[S]) -> Option<Self> {
        let segments = ranges.iter().filter_map(|r| {
            let id = PkRangeId::new(r.as_ref()).ok()?;
            let token = self.segments.get(&id)?;
            Some((id, token.clone()))
        });
        Self::from_segments(segments)
    }
}

impl fmt::Display for SessionToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (id, token)) in self.segments.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{id}:{token}")?;
        }
        Ok(())
    }
}

impl FromStr for SessionToken {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::{Field, ParseErrorKind};

    fn t(s: &str) -> SessionToken {
        SessionToken::parse(s).unwrap()
    }

    #[test]
    fn canonical_form_orders_ranges_and_regions() {
        assert_eq!(
            t("10:1#5#3=1#1=2,2:-1#1507,0:500").to_string(),
            "0:500,2:-1#1507,10:1#5#1=2#3=1"
        );
        assert_eq!(t("0:01#007").to_string(), "0:1#7");
    }

    #[test]
    fn repeated_region_last_value_wins() {
        assert_eq!(t("0:1#5#1=9#1=3").to_string(), "0:1#5#1=3");
    }

    #[test]
    fn lsns_keep_all_64_bits() {
        let (max, min) = (i64::MAX, i64::MIN);
        for s in [
            format!("0:{max}#{max}#4294967295={max}"),
            format!("0:{min}#{min}#0={min}"),
            format!("0:{min}"),
        ] {
            assert_eq!(t(&s).to_string(), s);
        }
        for (over, field) in [
            (format!("0:1#{}", u64::MAX), Field::GlobalLsn),
            (format!("0:{}#1", i128::from(min) - 1), Field::Version),
            (format!("0:1#1#2={}", i128::from(max) + 1), Field::RegionLsn),
            (
                format!("0:1#1#{}=1", u64::from(u32::MAX) + 1),
                Field::RegionId,
            ),
        ] {
            let err = SessionToken::parse(&over).unwrap_err();
            assert!(
                matches!(
                    &err,
                    ParseError::Segment {
                        kind: ParseErrorKind::OutOfRange { field: f, .. },
                        ..
                    } if *f == field
                ),
                "{over}: {err}"
            );
        }
    }

    #[test]
    fn negative_versions_and_lsns_parse_as_in_the_sdks() {
        // Microsoft's documented simple-to-vector conversion yields version -2.
        let converted = t("0:-2#1500");
        let Some(PartitionToken::Vector(v)) = converted.get("0") else {
            panic!("not a vector token: {converted}");
        };
        assert_eq!((v.version, v.global_lsn), (-2, 1500));
        assert_eq!(converted.to_string(), "0:-2#1500");
        // A region LSN of -5 parses everywhere; so do negative global and simple LSNs.
        assert_eq!(t("0:1#5#1=-5").to_string(), "0:1#5#1=-5");
        assert_eq!(t("0:3#-7,1:-42").to_string(), "0:3#-7,1:-42");
        // Leading zeros are dropped, as for positive numbers.
        assert_eq!(t("0:-002#-0015#1=-09").to_string(), "0:-2#-15#1=-9");
    }

    #[test]
    fn negative_numbers_compare_as_signed_integers() {
        // The higher version wins: -1 over -2, whatever the global LSNs.
        assert_eq!(
            t("0:-2#1500").merge(&t("0:-1#3")).unwrap().to_string(),
            "0:-1#3"
        );
        // -5 is behind -1, and -10 behind -9 (longer is not larger below zero).
        assert_eq!(
            t("0:1#-10#1=-5#2=-10")
                .merge(&t("0:1#-9#1=-1#2=-9"))
                .unwrap()
                .to_string(),
            "0:1#-9#1=-1#2=-9"
        );
        assert!(t("0:1#-10#1=-5").is_covered_by(&t("0:1#-9#1=-5")));
        assert!(!t("0:1#-9#1=-5").is_covered_by(&t("0:1#-10#1=-5")));
        assert_eq!(t("0:-7").merge(&t("0:-70")).unwrap().to_string(), "0:-7");
        let min = i64::MIN;
        assert_eq!(
            t(&format!("0:{min}#5"))
                .merge(&t("0:-1#1"))
                .unwrap()
                .to_string(),
            "0:-1#1"
        );
    }

    #[test]
    fn a_range_named_twice_is_merged() {
        assert_eq!(t("0:-1#105,0:-1#107").to_string(), "0:-1#107");
        assert_eq!(t("0:-1#107,0:-1#105").to_string(), "0:-1#107");
        assert_eq!(
            t("3:1#9#1=4,0:500,3:2#8#1=1#2=6,0:501,3:1#10#1=9").to_string(),
            "0:501,3:2#8#1=9#2=6"
        );
        let segments = ["0:1#100#1=20", "4:3", "0:1#90#1=30", "4:7"];
        let merged = SessionToken::merge_all(&segments.map(t)).unwrap().unwrap();
        assert_eq!(t(&segments.join(",")), merged);
        assert_eq!(merged.to_string(), "0:1#100#1=30,4:7");
    }

    #[test]
    fn a_range_named_twice_that_does_not_merge_is_refused() {
        let err = SessionToken::parse("0:1#10#1=5,2:7,0:1#11#2=6").unwrap_err();
        assert_eq!(
            err,
            ParseError::Segment {
                index: 2,
                segment: "0:1#11#2=6".into(),
                kind: ParseErrorKind::DuplicateRangeConflict(MergeError::RegionSetMismatch {
                    range: "0".into(),
                    version: 1,
                    left: "[1]".into(),
                    right: "[2]".into(),
                }),
            }
        );
        let err = SessionToken::parse("5:1#10,5:10").unwrap_err();
        assert_eq!(
            err.to_string(),
            "segment 1 (\"5:10\") repeats the pkRangeId of an earlier segment and does not merge \
             with it: range 5: a simple token and a vector token cannot be merged"
        );
    }

    #[test]
    fn errors_name_segment_and_field() {
        const SIGNED: &str = "is not a number (must be decimal digits, optionally after '-')";
        const NEG_ZERO: &str = "is a negative zero (a sign must make the number negative: write 0)";
        let cases = [
            ("", "session token is empty".to_string()),
            ("0:1# 5", "session token contains whitespace at byte 4".into()),
            ("0:- 1#5", "session token contains whitespace at byte 3".into()),
            ("0:1#5,", "segment 1 (\"\") is empty".into()),
            (
                "1#5",
                "segment 0 (\"1#5\") has no ':' between pkRangeId and token".into(),
            ),
            (":1#5", "segment 0 (\":1#5\") pkRangeId is empty".into()),
            (
                "0:1#5#",
                "segment 0 (\"0:1#5#\") region entry is empty (a trailing or doubled '#')".into(),
            ),
            ("0:+1#5", format!("segment 0 (\"0:+1#5\") version \"+1\" {SIGNED}")),
            ("0:1#-", format!("segment 0 (\"0:1#-\") global LSN \"-\" {SIGNED}")),
            ("0:--1", format!("segment 0 (\"0:--1\") LSN \"--1\" {SIGNED}")),
            (
                "0:1#5#1=-+3",
                format!("segment 0 (\"0:1#5#1=-+3\") region LSN \"-+3\" {SIGNED}"),
            ),
            ("0:1#5-", format!("segment 0 (\"0:1#5-\") global LSN \"5-\" {SIGNED}")),
            ("0:1##", "segment 0 (\"0:1##\") global LSN is empty".into()),
            ("0:", "segment 0 (\"0:\") LSN is empty".into()),
            (
                "0:1#5#1",
                "segment 0 (\"0:1#5#1\") region \"1\" has no '=' between region id and LSN".into(),
            ),
            (
                "0:1#5#x=1",
                "segment 0 (\"0:1#5#x=1\") region id \"x\" is not a number (must be decimal digits)"
                    .into(),
            ),
            (
                "0:1#5#-1=1",
                "segment 0 (\"0:1#5#-1=1\") region id \"-1\" is not a number (must be decimal digits)"
                    .into(),
            ),
            ("0:1#5,1:-0#5", format!("segment 1 (\"1:-0#5\") version \"-0\" {NEG_ZERO}")),
            (
                "0:1#5#1=-000",
                format!("segment 0 (\"0:1#5#1=-000\") region LSN \"-000\" {NEG_ZERO}"),
            ),
            ("0:-0", format!("segment 0 (\"0:-0\") LSN \"-0\" {NEG_ZERO}")),
            (
                "0:1#-9223372036854775809",
                "segment 0 (\"0:1#-9223372036854775809\") global LSN \"-9223372036854775809\" is \
                 out of range (must be within -9223372036854775808..=9223372036854775807, a \
                 signed 64-bit integer)"
                    .into(),
            ),
            (
                "0:1#5#4294967296=1",
                "segment 0 (\"0:1#5#4294967296=1\") region id \"4294967296\" is out of range \
                 (must be within 0..=4294967295, an unsigned 32-bit integer)"
                    .into(),
            ),
            (
                "0:2#5,0:2#6#1=1",
                "segment 1 (\"0:2#6#1=1\") repeats the pkRangeId of an earlier segment and does \
                 not merge with it: range 0: tokens at version 2 name different regions ([] vs \
                 [1])"
                    .into(),
            ),
        ];
        for (input, message) in cases {
            assert_eq!(
                SessionToken::parse(input).unwrap_err().to_string(),
                message,
                "input {input:?}"
            );
        }
    }

    #[test]
    fn merge_keeps_ranges_from_both_sides() {
        let a = t("0:1#100#1=20,1:5");
        let b = t("0:1#90#1=30,2:2#7");
        assert_eq!(a.merge(&b).unwrap().to_string(), "0:1#100#1=30,1:5,2:2#7");
    }

    #[test]
    fn failed_merge_names_the_range() {
        let a = t("0:1#1,4:1#100#1=20");
        let b = t("4:1#90#2=30");
        assert_eq!(
            a.merge(&b).unwrap_err().to_string(),
            "range 4: tokens at version 1 name different regions ([1] vs [2])"
        );
    }

    #[test]
    fn filter_keeps_requested_ranges_only() {
        let a = t("0:1#1,4:1#100#1=20,7:3");
        assert_eq!(a.filter(&["7", "0", "9"]).unwrap().to_string(), "0:1#1,7:3");
        assert_eq!(a.filter(&["9"]), None);
    }

    #[test]
    fn covers_needs_every_range() {
        let a = t("0:1#10,1:1#10");
        assert!(!a.is_covered_by(&t("0:1#10")));
        assert!(a.is_covered_by(&t("0:1#10,1:1#11,2:1#1")));
    }
}
