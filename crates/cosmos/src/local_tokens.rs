//! The tokens this process itself saw, per broker key, merged.
//!
//! Why: a token passed in the request options replaces the SDK's own session token for that
//! request. Sending the broker's token alone could then be older than what this very pod wrote or
//! read (a PutToken of its own that failed, a broker that restarted empty), so the wrapper merges
//! in what it saw itself. Bounded: when full it starts over, which only loses that extra margin.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use session_token::SessionToken;

pub(crate) struct LocalTokens {
    capacity: usize,
    tokens: Mutex<HashMap<String, SessionToken>>,
}

impl LocalTokens {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            capacity,
            tokens: Mutex::new(HashMap::new()),
        }
    }

    /// Merges a token seen in a response into the key's entry. Tokens that do not parse or do not
    /// merge (the broker's rules refuse some) replace nothing.
    pub(crate) fn observe(&self, key: &str, token: &str) {
        let Ok(token) = SessionToken::parse(token) else {
            return;
        };
        let mut tokens = self.tokens.lock().unwrap_or_else(PoisonError::into_inner);
        if tokens.len() >= self.capacity && !tokens.contains_key(key) {
            tokens.clear();
        }
        match tokens.get_mut(key) {
            Some(known) => {
                if let Ok(merged) = known.merge(&token) {
                    *known = merged;
                }
            }
            None => {
                tokens.insert(key.to_owned(), token);
            }
        }
    }

    /// `broker_token` merged with what this process saw for `key`, restricted to `ranges` when
    /// given. Falls back to the broker's token when the two do not merge.
    pub(crate) fn merged_with(&self, key: &str, broker_token: &str, ranges: &[String]) -> String {
        let Ok(broker) = SessionToken::parse(broker_token) else {
            return broker_token.to_owned();
        };
        let tokens = self.tokens.lock().unwrap_or_else(PoisonError::into_inner);
        let local = match tokens.get(key) {
            Some(local) if ranges.is_empty() => Some(local.clone()),
            Some(local) => local.filter(ranges),
            None => None,
        };
        drop(tokens);
        match local.map(|local| broker.merge(&local)) {
            Some(Ok(merged)) => merged.to_string(),
            _ => broker_token.to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merges_what_the_process_saw_into_the_broker_token() {
        let local = LocalTokens::new(10);
        local.observe("k", "0:1#50#1=50");
        assert_eq!(local.merged_with("k", "0:1#40#1=40", &[]), "0:1#50#1=50");
        assert_eq!(local.merged_with("k", "0:1#60#1=60", &[]), "0:1#60#1=60");
        assert_eq!(
            local.merged_with("other", "0:1#40#1=40", &[]),
            "0:1#40#1=40"
        );
    }

    #[test]
    fn restricts_local_segments_to_the_requested_ranges() {
        let local = LocalTokens::new(10);
        local.observe("k", "0:1#50#1=50");
        local.observe("k", "3:1#9#1=9");
        let ranges = vec!["3".to_owned()];
        assert_eq!(local.merged_with("k", "3:1#7#1=7", &ranges), "3:1#9#1=9");
    }

    #[test]
    fn starts_over_when_full() {
        let local = LocalTokens::new(1);
        local.observe("a", "0:1#50#1=50");
        local.observe("b", "0:1#5#1=5");
        assert_eq!(local.merged_with("a", "0:1#40#1=40", &[]), "0:1#40#1=40");
    }
}
