//! Partition key → partition key range id, learned from responses.
//!
//! Why learned: `azure_data_cosmos` 1.0.0 has no public call that maps a partition key to its
//! range id, but every response's session token names the range that served it. Knowing it, a
//! read keyed by a session scope asks the broker for that one segment. A split makes an entry
//! stale until the next response for that key corrects it; bounded like [`crate::local_tokens`].

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

pub(crate) struct RangeIds {
    capacity: usize,
    ids: Mutex<HashMap<String, String>>,
}

impl RangeIds {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            capacity,
            ids: Mutex::new(HashMap::new()),
        }
    }

    /// Records the range that served a response for the partition key, when the response's
    /// token has exactly one segment (a single-partition response).
    pub(crate) fn learn(&self, partition_key_json: &str, response_token: &str) {
        let mut segments = response_token.split(',');
        let (Some(segment), None) = (segments.next(), segments.next()) else {
            return;
        };
        let Some((range_id, _)) = segment.split_once(':') else {
            return;
        };
        let mut ids = self.ids.lock().unwrap_or_else(PoisonError::into_inner);
        if ids.len() >= self.capacity && !ids.contains_key(partition_key_json) {
            ids.clear();
        }
        ids.insert(partition_key_json.to_owned(), range_id.to_owned());
    }

    pub(crate) fn get(&self, partition_key_json: &str) -> Option<String> {
        let ids = self.ids.lock().unwrap_or_else(PoisonError::into_inner);
        ids.get(partition_key_json).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn learns_from_single_segment_tokens_only() {
        let ranges = RangeIds::new(10);
        ranges.learn(r#"["a"]"#, "3:1#9#1=9");
        ranges.learn(r#"["b"]"#, "0:1#5#1=5,1:1#5#1=5");
        assert_eq!(ranges.get(r#"["a"]"#).as_deref(), Some("3"));
        assert_eq!(ranges.get(r#"["b"]"#), None);
    }

    #[test]
    fn a_newer_response_corrects_the_entry() {
        let ranges = RangeIds::new(10);
        ranges.learn(r#"["a"]"#, "0:1#9#1=9");
        ranges.learn(r#"["a"]"#, "4:2#1#1=1");
        assert_eq!(ranges.get(r#"["a"]"#).as_deref(), Some("4"));
    }
}
