//! Parsing header values, strictly.
//!
//! Why strict: the SDKs disagree on oddities (whitespace, `+`, empty numbers, trailing `#`), and
//! a token the broker cannot vouch for fails the reads it is sent with (the Rust SDK answers
//! 503/20310 after its retries; SDKs in direct mode retry for longer). So anything ambiguous is
//! rejected with an error that says which segment and which field.
//!
//! Why not stricter: whatever the .NET, Java and Python SDKs accept as a meaningful value is
//! accepted and merged as they merge it, so that a token that works with the SDK works through
//! the broker:
//!
//! - versions and LSNs are any signed 64-bit value (`i64::MIN..=i64::MAX`): `0:-2#1500` is what
//!   Microsoft's documented simple-to-vector conversion produces, and a region LSN of `-5` parses
//!   in every SDK. Written as an optional `-` and ASCII digits; leading zeros are accepted and
//!   dropped on output (`007` is 7, `-007` is -7). A sign must mean something: `+5` and a negative
//!   zero (`-0`, `-00`) are rejected. Region ids are unsigned 32-bit (as in the SDKs), digits only;
//! - a header naming one range twice (`0:-1#105,0:-1#107`, as tools that concatenate headers
//!   produce) is merged per range in header order, as the .NET SDK and the Rust driver do; when
//!   the segments of one range do not merge, the header is rejected
//!   ([`ParseErrorKind::DuplicateRangeConflict`]);
//! - a region id repeated within one token: the last value wins, as in the SDKs.

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;
use std::fmt;

use crate::partition::{MergeError, PartitionToken, VectorToken};
use crate::range_id::{PkRangeId, RangeIdError};

/// The part of a segment an error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    /// The partition key range id before the `:` (`0` in `0:1#5`).
    RangeId,
    /// The first number of a vector token (`1` in `0:1#5`), signed 64-bit.
    Version,
    /// The second number of a vector token (`5` in `0:1#5`), signed 64-bit.
    GlobalLsn,
    /// A region id, left of the `=` in a region entry (`2` in `0:1#5#2=7`), unsigned 32-bit.
    RegionId,
    /// A region's local LSN, right of the `=` in a region entry (`7` in `0:1#5#2=7`), signed
    /// 64-bit.
    RegionLsn,
    /// The bare LSN of a simple token (`12` in `0:12`, API versions before 2018-06-18), signed
    /// 64-bit.
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

impl Field {
    /// How the field is written, for error messages.
    fn syntax(self) -> &'static str {
        match self {
            Self::RegionId => "decimal digits",
            _ => "decimal digits, optionally after '-'",
        }
    }

    /// The values the field accepts, for error messages.
    fn bounds(self) -> &'static str {
        match self {
            Self::RegionId => "0..=4294967295, an unsigned 32-bit integer",
            _ => "-9223372036854775808..=9223372036854775807, a signed 64-bit integer",
        }
    }
}

/// What is wrong with a segment.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseErrorKind {
    /// The segment is empty: a leading, trailing or doubled `,` in the header.
    #[error("is empty")]
    EmptySegment,
    /// The segment has no `:` separating the range id from the token.
    #[error("has no ':' between pkRangeId and token")]
    MissingColon,
    /// The range id left of the `:` is not a valid [`PkRangeId`].
    #[error("pkRangeId {0}")]
    RangeId(RangeIdError),
    /// A number holds something other than an optional `-` and ASCII digits (`+5`, `1x`, a lone
    /// `-`); region ids take no sign at all.
    #[error("{field} {value:?} is not a number (must be {})", .field.syntax())]
    NotANumber {
        /// The field that failed.
        field: Field,
        /// The offending text, cut to 64 bytes (with `...`) if longer.
        value: String,
    },
    /// A number is missing (`0:#5`, `0:1#5#2=`).
    #[error("{field} is empty")]
    EmptyNumber {
        /// The field that is empty.
        field: Field,
    },
    /// A well-formed number does not fit its type: signed 64-bit for versions and LSNs, unsigned
    /// 32-bit for region ids.
    #[error("{field} {value:?} is out of range (must be within {})", .field.bounds())]
    OutOfRange {
        /// The field that failed.
        field: Field,
        /// The offending text, cut to 64 bytes (with `...`) if longer.
        value: String,
    },
    /// `-0`, `-00`, ...: zero has no sign, and no SDK writes one; a sign must make the number
    /// negative (as `+` is rejected, so is a `-` that changes nothing).
    #[error("{field} {value:?} is a negative zero (a sign must make the number negative: write 0)")]
    NegativeZero {
        /// The field that failed.
        field: Field,
        /// The offending text, cut to 64 bytes (with `...`) if longer.
        value: String,
    },
    /// A region entry after the global LSN has no `=` between region id and LSN.
    #[error("region {value:?} has no '=' between region id and LSN")]
    MissingEquals {
        /// The region entry as written, cut to 64 bytes (with `...`) if longer.
        value: String,
    },
    /// A region entry is empty: a trailing or doubled `#`.
    #[error("region entry is empty (a trailing or doubled '#')")]
    EmptyRegion,
    /// The segment names a range that an earlier segment of the header already named, and the
    /// two tokens do not merge (different regions at one version, or a simple and a vector
    /// token). Repeated ranges whose tokens merge are accepted and merged.
    #[error("repeats the pkRangeId of an earlier segment and does not merge with it: {0}")]
    DuplicateRangeConflict(MergeError),
}

/// A header value that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// The header value is the empty string.
    #[error("session token is empty")]
    Empty,
    /// The header value contains whitespace, anywhere (the SDKs disagree on trimming it); the
    /// field is the byte offset of the first whitespace character.
    #[error("session token contains whitespace at byte {0}")]
    Whitespace(usize),
    /// One segment of the header value is malformed; the first bad segment is reported.
    #[error("segment {index} ({segment:?}) {kind}")]
    Segment {
        /// Zero-based position of the segment in the header value.
        index: usize,
        /// The segment as written, cut to 64 bytes (with `...`) if longer.
        segment: String,
        /// What is wrong with it.
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

/// Parses a version or LSN: an optional `-` and ASCII digits, within `i64`. No `+`, no space, no
/// negative zero.
fn number(field: Field, s: &str) -> Result<i64, ParseErrorKind> {
    if s.is_empty() {
        return Err(ParseErrorKind::EmptyNumber { field });
    }
    let (negative, digits) = match s.strip_prefix('-') {
        Some(digits) => (true, digits),
        None => (false, s),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ParseErrorKind::NotANumber {
            field,
            value: quote(s),
        });
    }
    if negative && digits.bytes().all(|b| b == b'0') {
        return Err(ParseErrorKind::NegativeZero {
            field,
            value: quote(s),
        });
    }
    // Only '-' and digits are left, which `i64::from_str` reads exactly (leading zeros too).
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

/// Parses a whole header value into its tokens by range; the segments of a range named more than
/// once are merged in header order.
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
        match out.entry(id) {
            Entry::Vacant(entry) => {
                entry.insert(token);
            }
            Entry::Occupied(mut entry) => {
                let merged = entry
                    .get()
                    .merge(&token, entry.key().as_str())
                    .map_err(|e| fail(ParseErrorKind::DuplicateRangeConflict(e)))?;
                entry.insert(merged);
            }
        }
    }
    Ok(out)
}
