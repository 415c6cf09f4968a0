//! Partition key range ids: the `<pkRangeId>` before the colon of a segment.
//!
//! Why a newtype: ids are strings on the wire ("0", "17", ...), but the canonical output orders
//! them as numbers, so that "2" comes before "10" as a reader expects.

use std::cmp::Ordering;
use std::fmt;

/// Longest accepted range id, in bytes. Real ids are short decimal numbers.
pub const MAX_RANGE_ID_BYTES: usize = 64;

/// A partition key range id.
///
/// Accepted characters are ASCII letters, digits, `-` and `_`: Cosmos uses decimal numbers, and
/// anything that could be confused with the header's separators is rejected.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct PkRangeId(String);

/// Why a string is not a range id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RangeIdError {
    /// The id is the empty string (`:1#5`).
    #[error("is empty")]
    Empty,
    /// The id is longer than 64 bytes.
    #[error("is longer than {MAX_RANGE_ID_BYTES} bytes")]
    TooLong,
    /// The id contains a character other than an ASCII letter, digit, `-` or `_`; the field is
    /// the first such character.
    #[error("contains {0:?}; only ASCII letters, digits, '-' and '_' are allowed")]
    BadCharacter(char),
}

impl PkRangeId {
    /// Validates and wraps a range id.
    pub fn new(id: &str) -> Result<Self, RangeIdError> {
        if id.is_empty() {
            return Err(RangeIdError::Empty);
        }
        if id.len() > MAX_RANGE_ID_BYTES {
            return Err(RangeIdError::TooLong);
        }
        if let Some(c) = id
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
        {
            return Err(RangeIdError::BadCharacter(c));
        }
        Ok(Self(id.to_owned()))
    }

    /// The id as it was written on the wire (leading zeros kept).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    fn numeric_digits(&self) -> Option<&str> {
        if self.0.bytes().all(|b| b.is_ascii_digit()) {
            Some(self.0.trim_start_matches('0'))
        } else {
            None
        }
    }
}

impl Ord for PkRangeId {
    /// Numeric ids first, in numeric order (any length, no overflow); then the others in byte
    /// order. Ties between equal numbers written differently ("7" and "07") fall back to bytes.
    fn cmp(&self, other: &Self) -> Ordering {
        match (self.numeric_digits(), other.numeric_digits()) {
            (Some(a), Some(b)) => a
                .len()
                .cmp(&b.len())
                .then_with(|| a.cmp(b))
                .then_with(|| self.0.cmp(&other.0)),
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (None, None) => self.0.cmp(&other.0),
        }
    }
}

impl PartialOrd for PkRangeId {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for PkRangeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for PkRangeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> PkRangeId {
        PkRangeId::new(s).unwrap()
    }

    #[test]
    fn numeric_ids_sort_as_numbers_before_other_ids() {
        let mut ids = [
            id("10"),
            id("b"),
            id("2"),
            id("007"),
            id("7"),
            id("a-1"),
            id("0"),
        ];
        ids.sort();
        let sorted: Vec<&str> = ids.iter().map(PkRangeId::as_str).collect();
        assert_eq!(sorted, ["0", "2", "007", "7", "10", "a-1", "b"]);
    }

    #[test]
    fn rejects_separators_and_empty() {
        assert_eq!(PkRangeId::new(""), Err(RangeIdError::Empty));
        assert_eq!(PkRangeId::new("1 "), Err(RangeIdError::BadCharacter(' ')));
        assert_eq!(PkRangeId::new("1#2"), Err(RangeIdError::BadCharacter('#')));
        assert_eq!(
            PkRangeId::new(&"1".repeat(MAX_RANGE_ID_BYTES + 1)),
            Err(RangeIdError::TooLong)
        );
    }
}
