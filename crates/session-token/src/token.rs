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
        let max = i64::MAX;
        let s = format!("0:{max}#{max}#4294967295={max}");
        assert_eq!(t(&s).to_string(), s);
        let over = format!("0:1#{}", u64::MAX);
        let err = SessionToken::parse(&over).unwrap_err();
        assert!(
            matches!(
                err,
                ParseError::Segment {
                    kind: ParseErrorKind::OutOfRange {
                        field: Field::GlobalLsn,
                        ..
                    },
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn errors_name_segment_and_field() {
        let cases = [
            ("", "session token is empty"),
            ("0:1# 5", "session token contains whitespace at byte 4"),
            ("0:1#5,", "segment 1 (\"\") is empty"),
            (
                "1#5",
                "segment 0 (\"1#5\") has no ':' between pkRangeId and token",
            ),
            (":1#5", "segment 0 (\":1#5\") pkRangeId is empty"),
            (
                "0:1#5#",
                "segment 0 (\"0:1#5#\") region entry is empty (a trailing or doubled '#')",
            ),
            (
                "0:+1#5",
                "segment 0 (\"0:+1#5\") version \"+1\" is not a number",
            ),
            ("0:1##", "segment 0 (\"0:1##\") global LSN is empty"),
            ("0:", "segment 0 (\"0:\") LSN is empty"),
            (
                "0:1#5#1",
                "segment 0 (\"0:1#5#1\") region \"1\" has no '=' between region id and LSN",
            ),
            (
                "0:1#5#x=1",
                "segment 0 (\"0:1#5#x=1\") region id \"x\" is not a number",
            ),
            (
                "0:1#5#1=-2",
                "segment 0 (\"0:1#5#1=-2\") region LSN \"-2\" is out of range (must be -1 or 0..=9223372036854775807)",
            ),
            (
                "0:1#5,0:2#5",
                "segment 1 (\"0:2#5\") pkRangeId 0 appears more than once (merge tokens with MergeToken first)",
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
