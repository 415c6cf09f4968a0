//! The merge script (`merge.lua`) and the decoding of its replies.
//!
//! Why a Lua script: PutToken is a read-merge-write that must be atomic across every broker
//! replica, and one script call is one atomic step in Redis, with no round trip in between
//! and the TTL refreshed in the same step. `redis::Script` sends EVALSHA and, on NOSCRIPT (after
//! a Redis restart or SCRIPT FLUSH), loads the script and retries; the script is also pre-loaded
//! on every new connection.

use std::sync::LazyLock;

use redis::Value;
use session_token::{MergeError, SessionToken};

pub(crate) static MERGE_SCRIPT: LazyLock<redis::Script> =
    LazyLock::new(|| redis::Script::new(include_str!("merge.lua")));

/// Stores a merged token only if the value it was merged from is unchanged
/// (`put_if_unchanged.lua`), with the TTL refreshed. See `put.rs`.
pub(crate) static PUT_IF_UNCHANGED_SCRIPT: LazyLock<redis::Script> =
    LazyLock::new(|| redis::Script::new(include_str!("put_if_unchanged.lua")));

/// Replaces a value only if it is unchanged (`compare_and_set.lua`), keeping the TTL. Used by
/// DiscardToken, which computes the new value in the broker (`storage::discard`), so the
/// rule is written once, in Rust.
pub(crate) static COMPARE_AND_SET_SCRIPT: LazyLock<redis::Script> =
    LazyLock::new(|| redis::Script::new(include_str!("compare_and_set.lua")));

/// What the script did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MergeReply {
    /// Stored; the stored result. `replaced_corrupt` when an unparsable value was overwritten.
    Merged {
        /// The token now stored, in canonical form.
        token: SessionToken,
        /// True when the value found under the key did not parse and was overwritten.
        replaced_corrupt: bool,
    },
    /// The token does not merge with the stored one (the script applies the same rules as
    /// [`SessionToken::merge`]); nothing was written.
    Conflict(MergeError),
    /// The merged token would hold this many ranges, more than the put's `max_segments`;
    /// nothing was written.
    TooManySegments(usize),
    /// The script could not parse the token it was given (`bad_input`): the broker formats
    /// every token canonically, so this is a broker/script mismatch or a bug.
    BadInput,
}

/// A reply the broker does not understand (a script/broker version mismatch, or a bug).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unexpected merge script reply: {0}")]
pub struct BadReply(pub String);

fn text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    }
}

/// Decodes the script's reply array.
pub fn decode(reply: &Value) -> Result<MergeReply, BadReply> {
    let bad = || BadReply(format!("{reply:?}"));
    let Value::Array(items) = reply else {
        return Err(bad());
    };
    let fields: Vec<String> = items
        .iter()
        .map(text)
        .collect::<Option<_>>()
        .ok_or_else(bad)?;
    match fields
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["ok", merged, replaced] => Ok(MergeReply::Merged {
            token: SessionToken::parse(merged).map_err(|_| bad())?,
            replaced_corrupt: *replaced == "1",
        }),
        ["region_mismatch", range, version, left, right] => {
            Ok(MergeReply::Conflict(MergeError::RegionSetMismatch {
                range: (*range).to_owned(),
                version: version.parse().map_err(|_| bad())?,
                left: (*left).to_owned(),
                right: (*right).to_owned(),
            }))
        }
        ["kind_mismatch", range] => Ok(MergeReply::Conflict(MergeError::KindMismatch {
            range: (*range).to_owned(),
        })),
        ["too_many", n] => Ok(MergeReply::TooManySegments(n.parse().map_err(|_| bad())?)),
        ["bad_input"] => Ok(MergeReply::BadInput),
        _ => Err(bad()),
    }
}
