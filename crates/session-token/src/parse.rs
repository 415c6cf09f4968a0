//! Parsing header values, strictly.
//!
//! Why strict: the SDKs disagree on oddities (whitespace, `+`, empty numbers, trailing `#`), and
//! a token the broker cannot vouch for makes Cosmos retry 404/1002 for about 30 seconds. So
//! anything ambiguous is rejected with an error that says which segment and which field.

use std::collections::BTreeMap;
use std::fmt;

use crate::partition::{PartitionToken, VectorToken};
use crate::range_id::{PkRangeId, RangeIdError};

/// The part of a segment an error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    RangeId,
    Version,
    GlobalLsn,
    RegionId,
    RegionLsn,
    SimpleLsn,
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::RangeId => "pkRangeId",
            Self::Version => "version",
            Self::GlobalLsn => "global LSN",
            Self::RegionId => "region id",
            Self::RegionLsn => "region LSN",
            Self::SimpleLsn => "LSN",
        })
    }
}

/// What is wrong with a segment.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseErrorKind {
    #[error("is empty")]
    EmptySegment,
    #[error("has no ':' between pkRangeId and token")]
    MissingColon,
    #[error("pkRangeId {0}")]
    RangeId(RangeIdError),
    #[error("{field} {value:?} is not a number")]
    NotANumber { field: Field, value: String },
    #[error("{field} is empty")]
    EmptyNumber { field: Field },
    #[error("{field} {value:?} is out of range (must be -1 or 0..={max})", max = i64::MAX)]
    OutOfRange { field: Field, value: String },
    #[error("region {value:?} has no '=' between region id and LSN")]
    MissingEquals { value: String },
    #[error("region entry is empty (a trailing or doubled '#')")]
    EmptyRegion,
    #[error("pkRangeId {0} appears more than once (merge tokens with MergeToken first)")]
    DuplicateRange(String),
}

/// A header value that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("session token is empty")]
    Empty,
    #[error("session token contains whitespace at byte {0}")]
    Whitespace(usize),
    #[error("segment {index} ({segment:?}) {kind}")]
    Segment {
        /// Zero-based position of the segment in the header value.
        index: usize,
        segment: String,
        kind: ParseErrorKind,
    },
}

/// Longest segment quoted back in an error, so an error never echoes a huge input.
const QUOTE_LIMIT: usize = 64;

fn quote(segment: &str) -> String {
    if segment.len() <= QUOTE_LIMIT {
        return segment.to_owned();
    }
    let mut end = QUOTE_LIMIT;
    while !segment.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &segment[..end])
}

/// Parses a signed 64-bit LSN or version: `-1`, or ASCII digits. No sign, space or `+`.
fn number(field: Field, s: &str) -> Result<i64, ParseErrorKind> {
    if s.is_empty() {
        return Err(ParseErrorKind::EmptyNumber { field });
    }
    if s == "-1" {
        return Ok(-1);
    }
    if !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(
            if s.len() > 1 && s.starts_with('-') && s[1..].bytes().all(|b| b.is_ascii_digit()) {
                ParseErrorKind::OutOfRange {
                    field,
                    value: quote(s),
                }
            } else {
                ParseErrorKind::NotANumber {
                    field,
                    value: quote(s),
                }
            },
        );
    }
    s.parse::<i64>().map_err(|_| ParseErrorKind::OutOfRange {
        field,
        value: quote(s),
    })
}

fn region_id(s: &str) -> Result<u32, ParseErrorKind> {
    let field = Field::RegionId;
    if s.is_empty() {
        return Err(ParseErrorKind::EmptyNumber { field });
    }
    if !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ParseErrorKind::NotANumber {
            field,
            value: quote(s),
        });
    }
    s.parse::<u32>().map_err(|_| ParseErrorKind::OutOfRange {
        field,
        value: quote(s),
    })
}

/// Parses the right-hand side of a segment.
pub(crate) fn partition_token(s: &str) -> Result<PartitionToken, ParseErrorKind> {
    let mut parts = s.split('#');
    let first = parts.next().unwrap_or_default();
    let Some(global) = parts.next() else {
        return number(Field::SimpleLsn, first).map(PartitionToken::Simple);
    };
    let version = number(Field::Version, first)?;
    let global_lsn = number(Field::GlobalLsn, global)?;
    let mut regions = BTreeMap::new();
    for region in parts {
        if region.is_empty() {
            return Err(ParseErrorKind::EmptyRegion);
        }
        let Some((id, lsn)) = region.split_once('=') else {
            return Err(ParseErrorKind::MissingEquals {
                value: quote(region),
            });
        };
        // A repeated region id: the last value wins, as in the SDKs.
        regions.insert(region_id(id)?, number(Field::RegionLsn, lsn)?);
    }
    Ok(PartitionToken::Vector(VectorToken {
        version,
        global_lsn,
        regions,
    }))
}

/// Parses a whole header value into its segments, in order.
pub(crate) fn segments(value: &str) -> Result<BTreeMap<PkRangeId, PartitionToken>, ParseError> {
    if value.is_empty() {
        return Err(ParseError::Empty);
    }
    if let Some(pos) = value.find(char::is_whitespace) {
        return Err(ParseError::Whitespace(pos));
    }
    let mut out = BTreeMap::new();
    for (index, segment) in value.split(',').enumerate() {
        let fail = |kind| ParseError::Segment {
            index,
            segment: quote(segment),
            kind,
        };
        if segment.is_empty() {
            return Err(fail(ParseErrorKind::EmptySegment));
        }
        let (id, token) = segment
            .split_once(':')
            .ok_or_else(|| fail(ParseErrorKind::MissingColon))?;
        let id = PkRangeId::new(id).map_err(|e| fail(ParseErrorKind::RangeId(e)))?;
        let token = partition_token(token).map_err(fail)?;
        if out.contains_key(&id) {
            return Err(fail(ParseErrorKind::DuplicateRange(id.to_string())));
        }
        out.insert(id, token);
    }
    Ok(out)
}
