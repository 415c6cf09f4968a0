//! Partition key → partition key range id, and range id → the range's EPK bounds, learned from
//! responses.
//!
//! Why learned: `azure_data_cosmos` 1.0.0 has no public call that maps a partition key to its
//! range id (`FeedRange`s carry EPK bounds, not ids), but every single-partition response's
//! session token names the range that served it, and the SDK's routing map gives the bounds of
//! the range that holds a partition key today. Knowing the target range, a read asks the broker
//! for that range's segment (and its parents' after a split) and sends exactly one segment, as the
//! SDKs do.
//!
//! A split makes an entry stale: the partition key's bounds no longer equal those learned with
//! the id, so [`RangeIds::target`] stops answering for it until a response teaches the child's
//! id. Bounded like [`crate::local_tokens`].

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use azure_data_cosmos::feed::FeedRange;

/// The range a read goes to, and the ranges it was split from that this process knows of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Target {
    pub(crate) id: String,
    pub(crate) parents: Vec<String>,
}

impl Target {
    /// The target and its parents, target first: the ranges to ask the broker for.
    pub(crate) fn ranges(&self) -> Vec<String> {
        std::iter::once(self.id.clone())
            .chain(self.parents.iter().cloned())
            .collect()
    }
}

#[derive(Default)]
struct Learned {
    by_partition_key: HashMap<String, String>,
    bounds: HashMap<String, FeedRange>,
}

pub(crate) struct RangeIds {
    capacity: usize,
    learned: Mutex<Learned>,
}

/// The range id of a single-segment token; `None` for composite or malformed tokens.
pub(crate) fn single_range_id(token: &str) -> Option<&str> {
    let mut segments = token.split(',');
    let (Some(segment), None) = (segments.next(), segments.next()) else {
        return None;
    };
    let (range_id, _) = segment.split_once(':')?;
    (!range_id.is_empty()).then_some(range_id)
}

impl RangeIds {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            capacity,
            learned: Mutex::new(Learned::default()),
        }
    }

    /// Records the range that served a response for the partition key, with the bounds the
    /// routing map gives that key now, when the response's token has exactly one segment.
    pub(crate) fn learn(&self, partition_key_json: &str, bounds: FeedRange, response_token: &str) {
        let Some(range_id) = single_range_id(response_token) else {
            return;
        };
        let mut learned = self.learned.lock().unwrap_or_else(PoisonError::into_inner);
        if learned.by_partition_key.len() >= self.capacity
            && !learned.by_partition_key.contains_key(partition_key_json)
        {
            learned.by_partition_key.clear();
        }
        if learned.bounds.len() >= self.capacity && !learned.bounds.contains_key(range_id) {
            learned.bounds.clear();
        }
        learned
            .by_partition_key
            .insert(partition_key_json.to_owned(), range_id.to_owned());
        learned.bounds.insert(range_id.to_owned(), bounds);
    }

    /// The range holding the partition key, if the id learned for it still has the bounds the
    /// routing map gives now (`current`), with the known ranges whose bounds contain it (its
    /// parents before a split).
    pub(crate) fn target(&self, partition_key_json: &str, current: &FeedRange) -> Option<Target> {
        let learned = self.learned.lock().unwrap_or_else(PoisonError::into_inner);
        let id = learned.by_partition_key.get(partition_key_json)?;
        if learned.bounds.get(id) != Some(current) {
            return None;
        }
        let mut parents: Vec<String> = learned
            .bounds
            .iter()
            .filter(|(other, bounds)| *other != id && current.is_subset_of(bounds))
            .map(|(other, _)| other.clone())
            .collect();
        parents.sort();
        Some(Target {
            id: id.clone(),
            parents,
        })
    }
}

#[cfg(test)]
mod tests {
    use azure_data_cosmos::PartitionKey;
    use azure_data_cosmos::models::PartitionKeyDefinition;

    use super::*;

    fn definition() -> PartitionKeyDefinition {
        serde_json::from_value(serde_json::json!({"paths": ["/pk"], "kind": "Hash", "version": 2}))
            .unwrap()
    }

    /// Three nested EPK ranges: the whole key space, a half, and the logical partition of "a".
    fn bounds() -> (FeedRange, FeedRange, FeedRange) {
        let full = FeedRange::full();
        let logical = FeedRange::for_partition(PartitionKey::from("a"), &definition());
        let half = FeedRange::new(
            full.min_inclusive().clone(),
            logical.max_exclusive().clone(),
        )
        .unwrap();
        (full, half, logical)
    }

    #[test]
    fn reads_the_range_id_of_single_segment_tokens_only() {
        assert_eq!(single_range_id("3:1#9#1=9"), Some("3"));
        assert_eq!(single_range_id("0:1#5#1=5,1:1#5#1=5"), None);
        assert_eq!(single_range_id("nonsense"), None);
        assert_eq!(single_range_id(":1#5"), None);
    }

    #[test]
    fn answers_while_the_bounds_are_the_learned_ones() {
        let (full, half, _) = bounds();
        let ranges = RangeIds::new(10);
        ranges.learn(r#"["a"]"#, full.clone(), "0:1#9#1=9");
        ranges.learn(r#"["b"]"#, full.clone(), "0:1#5#1=5,1:1#5#1=5");
        assert_eq!(
            ranges.target(r#"["a"]"#, &full),
            Some(Target {
                id: "0".into(),
                parents: vec![]
            })
        );
        assert_eq!(
            ranges.target(r#"["b"]"#, &full),
            None,
            "composite: not learned"
        );
        assert_eq!(
            ranges.target(r#"["a"]"#, &half),
            None,
            "after a split the key's bounds changed: the learned id is stale"
        );
    }

    #[test]
    fn after_a_split_the_child_is_the_target_and_the_parent_is_named() {
        let (full, half, _) = bounds();
        let ranges = RangeIds::new(10);
        ranges.learn(r#"["a"]"#, full, "0:1#9#1=9");
        ranges.learn(r#"["a"]"#, half.clone(), "4:1#12#1=12");
        let target = ranges.target(r#"["a"]"#, &half).unwrap();
        assert_eq!(target.id, "4");
        assert_eq!(target.parents, vec!["0".to_owned()]);
        assert_eq!(target.ranges(), vec!["4".to_owned(), "0".to_owned()]);
    }
}
