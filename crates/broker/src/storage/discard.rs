//! The DiscardToken rule: which stored segments a token that Cosmos could not serve condemns.
//!
//! Why a rule of its own, shared by every store: a read that carried the broker's token failed
//! because the container cannot serve that token (404/1002 then 503/20310, 400/1024 after a
//! recreation). A stored segment *at least as far ahead* as the failed one is just as
//! unservable and must go, or every later read carries it again; a stored segment *behind* the
//! failed one (a newer, legitimate write since, or a different generation of the range) says
//! nothing about it and stays. The Redis script (`discard.lua`) applies the same rule, checked
//! against this function by a property test.
//!
//! "At least as far ahead" is the SDKs' `IsValid` read from the other side (.NET
//! `VectorSessionToken.IsValid`, Java and Python alike): the stored segment is ahead when its
//! version is higher, or, at the same version, when its global LSN is not smaller and no region
//! the two share is behind. Regions only one side names do not count (unlike the merge, which
//! refuses different region sets at one version). Simple tokens compare by LSN; a simple and a
//! vector token never condemn each other.

use session_token::{PartitionToken, PkRangeId, SessionToken};

/// What a discard did to one stored token.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Discarded {
    /// The ranges removed, in canonical order.
    pub removed: Vec<PkRangeId>,
    /// What remains stored; `None` when nothing does (the key is then deleted).
    pub remaining: Option<SessionToken>,
}

/// True when `stored` is at least as far ahead as `failed` (see the module docs).
pub fn is_at_least_as_far_ahead(stored: &PartitionToken, failed: &PartitionToken) -> bool {
    match (stored, failed) {
        (PartitionToken::Simple(s), PartitionToken::Simple(f)) => s >= f,
        (PartitionToken::Vector(s), PartitionToken::Vector(f)) => {
            if s.version != f.version {
                return s.version > f.version;
            }
            s.global_lsn >= f.global_lsn
                && f.regions
                    .iter()
                    .all(|(id, lsn)| s.regions.get(id).is_none_or(|stored| stored >= lsn))
        }
        _ => false,
    }
}

/// Applies a discard of `failed` to the `stored` token: every range of `failed` whose stored
/// segment is at least as far ahead is removed.
pub fn apply(stored: &SessionToken, failed: &SessionToken) -> Discarded {
    let mut removed = Vec::new();
    let mut kept = Vec::with_capacity(stored.len());
    for (id, token) in stored.segments() {
        match failed.get(id.as_str()) {
            Some(f) if is_at_least_as_far_ahead(token, f) => removed.push(id.clone()),
            _ => kept.push((id.clone(), token.clone())),
        }
    }
    Discarded {
        removed,
        remaining: SessionToken::from_segments(kept),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn t(s: &str) -> SessionToken {
        SessionToken::parse(s).unwrap()
    }

    fn removed(stored: &str, failed: &str) -> (Vec<String>, Option<String>) {
        let d = apply(&t(stored), &t(failed));
        (
            d.removed.iter().map(|r| r.as_str().to_owned()).collect(),
            d.remaining.map(|r| r.to_string()),
        )
    }

    #[test]
    fn a_stored_segment_ahead_or_equal_goes_one_behind_stays() {
        // Equal: the very token that failed.
        assert_eq!(
            removed("0:1#100#1=5", "0:1#100#1=5"),
            (vec!["0".into()], None)
        );
        // Ahead by global LSN, by region LSN, by version (even with a smaller global LSN).
        assert_eq!(removed("0:1#101#1=5", "0:1#100#1=5").0, ["0"]);
        assert_eq!(removed("0:1#100#1=6", "0:1#100#1=5").0, ["0"]);
        assert_eq!(removed("0:2#3#1=1", "0:1#100#1=5").0, ["0"]);
        // Behind by global LSN, by a shared region, by version: left alone.
        let behind = |s: &str| removed(s, "0:1#100#1=5");
        assert_eq!(behind("0:1#99#1=5"), (vec![], Some("0:1#99#1=5".into())));
        assert_eq!(behind("0:1#100#1=4").0, Vec::<String>::new());
        assert_eq!(behind("0:0#500#1=9").0, Vec::<String>::new());
    }

    #[test]
    fn only_shared_regions_count_and_kinds_never_mix() {
        assert_eq!(removed("0:1#100#2=1", "0:1#100#1=5").0, ["0"]);
        assert_eq!(removed("0:7", "0:5").0, ["0"]);
        assert_eq!(removed("0:4", "0:5").0, Vec::<String>::new());
        assert_eq!(removed("0:500", "0:1#100").0, Vec::<String>::new());
        assert_eq!(removed("0:1#100", "0:500").0, Vec::<String>::new());
    }

    #[test]
    fn only_the_failed_ranges_are_considered() {
        assert_eq!(
            removed("0:1#100,1:1#7,2:1#9", "1:1#7,5:1#1"),
            (vec!["1".into()], Some("0:1#100,2:1#9".into()))
        );
    }
}
