//! The tokens this process itself saw for the container, per partition key range, merged.
//!
//! Why: a token passed in the request options replaces the SDK's own session token for that
//! request, and the SDK keeps its own per range (every response of the container merged in, for
//! every key). Sending the broker's token alone could then be older than what this very pod wrote
//! or read before in that range (a PutToken of its own that failed, a broker that restarted
//! empty, a write under another key), so the wrapper merges in what it saw itself, range by range,
//! as the SDK would. Bounded: when full it starts over, which only loses that extra margin.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use session_token::{PartitionToken, PkRangeId, SessionToken};

pub(crate) struct LocalTokens {
    capacity: usize,
    ranges: Mutex<HashMap<PkRangeId, PartitionToken>>,
}

impl LocalTokens {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            capacity,
            ranges: Mutex::new(HashMap::new()),
        }
    }

    /// Merges a token seen in a response into the ranges it names. A token that does not parse
    /// changes nothing; a range whose tokens do not merge (the broker's rules refuse some) keeps
    /// what it had.
    pub(crate) fn observe(&self, token: &str) {
        let Ok(token) = SessionToken::parse(token) else {
            return;
        };
        let mut ranges = self.ranges.lock().unwrap_or_else(PoisonError::into_inner);
        if ranges.len() + token.len() > self.capacity {
            ranges.clear();
        }
        for (id, seen) in token.segments() {
            match ranges.get_mut(id) {
                Some(known) => {
                    if let Ok(merged) = known.merge(seen, id.as_str()) {
                        *known = merged;
                    }
                }
                None => {
                    ranges.insert(id.clone(), seen.clone());
                }
            }
        }
    }

    /// What this process saw of the given ranges, as one token; `None` when it saw none of them.
    pub(crate) fn get<S: AsRef<str>>(&self, wanted: &[S]) -> Option<SessionToken> {
        let ranges = self.ranges.lock().unwrap_or_else(PoisonError::into_inner);
        SessionToken::from_segments(wanted.iter().filter_map(|range| {
            let id = PkRangeId::new(range.as_ref()).ok()?;
            let token = ranges.get(&id)?.clone();
            Some((id, token))
        }))
    }

    /// Forgets what this process saw of the ranges `token` names: after a read failed on a
    /// token these ranges were part of. The SDK's own cache still holds this process's progress,
    /// and it is what reads send while the wrapper has nothing to add.
    pub(crate) fn forget(&self, token: &SessionToken) {
        let mut ranges = self.ranges.lock().unwrap_or_else(PoisonError::into_inner);
        for (id, _) in token.segments() {
            ranges.remove(id);
        }
    }

    /// `broker` merged, range by range, with what this process saw of the same ranges. Falls
    /// back to the broker's token when the two do not merge.
    pub(crate) fn merged_into(&self, broker: SessionToken) -> SessionToken {
        let ranges: Vec<&str> = broker.segments().map(|(id, _)| id.as_str()).collect();
        match self.get(&ranges) {
            Some(local) => broker.merge(&local).unwrap_or(broker),
            None => broker,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(value: &str) -> SessionToken {
        SessionToken::parse(value).unwrap()
    }

    #[test]
    fn merges_what_the_process_saw_into_the_broker_token() {
        let local = LocalTokens::new(10);
        local.observe("0:1#50#1=50");
        assert_eq!(
            local.merged_into(token("0:1#40#1=40")).to_string(),
            "0:1#50#1=50"
        );
        assert_eq!(
            local.merged_into(token("0:1#60#1=60")).to_string(),
            "0:1#60#1=60"
        );
        assert_eq!(
            local.merged_into(token("1:1#40#1=40")).to_string(),
            "1:1#40#1=40",
            "a range the process never saw is the broker's alone"
        );
    }

    #[test]
    fn progress_seen_under_any_key_counts_for_the_range() {
        let local = LocalTokens::new(10);
        // Two responses of range 0 (for example writes to two partition keys), merged.
        local.observe("0:1#50#1=50");
        local.observe("0:1#70#1=70");
        local.observe("3:1#9#1=9");
        assert_eq!(
            local.merged_into(token("0:1#60#1=60")).to_string(),
            "0:1#70#1=70"
        );
        assert_eq!(
            local.merged_into(token("0:1#60#1=60")).len(),
            1,
            "ranges the broker token does not name are not added"
        );
        assert_eq!(local.get(&["3", "5"]).unwrap().to_string(), "3:1#9#1=9");
        assert_eq!(local.get(&["5"]), None);
    }

    #[test]
    fn a_token_that_does_not_parse_changes_nothing() {
        let local = LocalTokens::new(10);
        local.observe("0:1#50#1=50");
        local.observe("0:garbage");
        assert_eq!(local.get(&["0"]).unwrap().to_string(), "0:1#50#1=50");
    }

    #[test]
    fn starts_over_when_full() {
        let local = LocalTokens::new(1);
        local.observe("0:1#50#1=50");
        local.observe("1:1#5#1=5");
        assert_eq!(local.get(&["0"]), None);
        assert_eq!(local.get(&["1"]).unwrap().to_string(), "1:1#5#1=5");
    }

    /// Header values over ranges 0..4, one version and one region set, so that any two merge.
    fn header() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        proptest::collection::btree_map(0u8..4, (0u64..1000, 0u64..1000, 0u64..1000), 1..4)
            .prop_map(|segments| {
                segments
                    .into_iter()
                    .map(|(range, (global, east, west))| {
                        format!("{range}:1#{global}#0={east}#1={west}")
                    })
                    .collect::<Vec<_>>()
                    .join(",")
            })
    }

    proptest::proptest! {
        /// What is sent covers the broker's token and everything the process saw of the same
        /// ranges, names exactly the broker's ranges, and does not depend on the order in which
        /// the process saw its answers.
        #[test]
        fn the_merge_covers_both_sides_whatever_the_order(
            seen in proptest::collection::vec(header(), 0..8),
            broker in header(),
        ) {
            let forward = LocalTokens::new(100);
            let backward = LocalTokens::new(100);
            for t in &seen {
                forward.observe(t);
            }
            for t in seen.iter().rev() {
                backward.observe(t);
            }
            let broker = token(&broker);
            let sent = forward.merged_into(broker.clone());
            proptest::prop_assert_eq!(&sent, &backward.merged_into(broker.clone()));
            proptest::prop_assert!(broker.is_covered_by(&sent));
            let ranges: Vec<&str> = broker.segments().map(|(id, _)| id.as_str()).collect();
            let sent_ranges: Vec<&str> = sent.segments().map(|(id, _)| id.as_str()).collect();
            proptest::prop_assert_eq!(&sent_ranges, &ranges);
            for t in &seen {
                if let Some(part) = token(t).filter(&ranges) {
                    proptest::prop_assert!(part.is_covered_by(&sent), "{} not covered by {}", part, sent);
                }
            }
        }
    }
}
