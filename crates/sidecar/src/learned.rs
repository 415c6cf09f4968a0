//! What the sidecar learns from the traffic it forwards: each container's current resource id
//! (its generation) and, per generation, which partition key range serves a partition key.
//!
//! Why learned: the sidecar has no SDK of its own and makes no requests of its own. Every SDK
//! reads the container (`GET /dbs/{db}/colls/{coll}`, whose body has `_rid`) before it touches
//! items, and every item response names its owner (`x-ms-content-path`, the container's
//! `_rid`) and the range that served it (the one segment of `x-ms-session-token`). The scope is
//! `<account host>/<database>/<container>/<_rid>`, the convention every language uses
//! (docs/clients.md), so a container deleted and recreated under the same name never receives
//! its predecessor's tokens. The range lets a read send only the target range's segment, as the
//! SDKs do; a split shows as an answer from another range, which replaces what was learned.
//!
//! Bounded: each map starts over when full, which only costs a read without the broker's token
//! until the next answer.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use crate::route::ContainerLink;

/// The maps' bound.
const CAPACITY: usize = 100_000;

#[derive(Default)]
struct Maps {
    rids: HashMap<ContainerLink, String>,
    ranges: HashMap<(String, String), String>,
}

/// The sidecar's memory of containers and ranges.
pub struct Learned {
    account_host: String,
    maps: Mutex<Maps>,
}

impl Learned {
    /// An empty memory for the account at `account_host` (the upstream's host name).
    pub fn new(account_host: impl Into<String>) -> Self {
        Self {
            account_host: account_host.into(),
            maps: Mutex::new(Maps::default()),
        }
    }

    fn maps(&self) -> std::sync::MutexGuard<'_, Maps> {
        self.maps.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records the container's resource id, from a container read's body or an item response's
    /// `x-ms-content-path`. Returns whether it changed (a new generation).
    pub fn learn_rid(&self, link: &ContainerLink, rid: &str) -> bool {
        let rid = rid.trim();
        if rid.is_empty() || rid.chars().any(char::is_control) {
            return false;
        }
        let mut maps = self.maps();
        if maps.rids.get(link).is_some_and(|known| known == rid) {
            return false;
        }
        if maps.rids.len() >= CAPACITY {
            maps.rids.clear();
        }
        maps.rids.insert(link.clone(), rid.to_owned());
        true
    }

    /// Forgets the container's resource id (after an answer said the container was recreated):
    /// its operations go ahead without the broker until the next container read.
    pub fn forget_rid(&self, link: &ContainerLink) {
        self.maps().rids.remove(link);
    }

    /// The broker scope of the container's current generation, if its resource id is known.
    pub fn scope(&self, link: &ContainerLink) -> Option<String> {
        let maps = self.maps();
        let rid = maps.rids.get(link)?;
        Some(scope(&self.account_host, link, rid))
    }

    /// Records the range that served `partition_key` in `scope`, when `response_token` has
    /// exactly one segment.
    pub fn learn_range(&self, scope: &str, partition_key: &str, response_token: &str) {
        let Some(range) = single_range_id(response_token) else {
            return;
        };
        let mut maps = self.maps();
        let entry = (scope.to_owned(), partition_key.to_owned());
        if maps.ranges.get(&entry).is_some_and(|known| known == range) {
            return;
        }
        if maps.ranges.len() >= CAPACITY {
            maps.ranges.clear();
        }
        maps.ranges.insert(entry, range.to_owned());
    }

    /// The range that last served `partition_key` in `scope`.
    pub fn range(&self, scope: &str, partition_key: &str) -> Option<String> {
        self.maps()
            .ranges
            .get(&(scope.to_owned(), partition_key.to_owned()))
            .cloned()
    }
}

/// `<account host>/<database>/<container>/<rid>`, a `/` in the resource id written `-`, as
/// `tokenbroker-cosmos`'s `ContainerScope::for_generation` builds it.
pub fn scope(account_host: &str, link: &ContainerLink, rid: &str) -> String {
    format!(
        "{account_host}/{}/{}/{}",
        link.database,
        link.container,
        rid.replace('/', "-")
    )
}

/// The range id of a single-segment token; `None` for composite or malformed tokens.
pub fn single_range_id(token: &str) -> Option<&str> {
    let mut segments = token.split(',');
    let (Some(segment), None) = (segments.next(), segments.next()) else {
        return None;
    };
    let (range, _) = segment.trim().split_once(':')?;
    (!range.is_empty()).then_some(range)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(container: &str) -> ContainerLink {
        ContainerLink {
            database: "shop".into(),
            container: container.into(),
        }
    }

    #[test]
    fn a_scope_per_generation() {
        let learned = Learned::new("acct.documents.azure.com");
        assert_eq!(
            learned.scope(&link("orders")),
            None,
            "unknown until learned"
        );
        assert!(learned.learn_rid(&link("orders"), "AAAAAYAAAAE="));
        assert!(
            !learned.learn_rid(&link("orders"), "AAAAAYAAAAE="),
            "same generation"
        );
        assert_eq!(
            learned.scope(&link("orders")).as_deref(),
            Some("acct.documents.azure.com/shop/orders/AAAAAYAAAAE=")
        );
        assert!(
            learned.learn_rid(&link("orders"), "AAAAAYAAAAI="),
            "recreated"
        );
        assert_eq!(
            learned.scope(&link("orders")).as_deref(),
            Some("acct.documents.azure.com/shop/orders/AAAAAYAAAAI=")
        );
        assert!(!learned.learn_rid(&link("carts"), ""));
        learned.forget_rid(&link("orders"));
        assert_eq!(learned.scope(&link("orders")), None);
        assert_eq!(scope("h", &link("c"), "a/b"), "h/shop/c/a-b");
    }

    #[test]
    fn ranges_are_learned_from_single_segment_tokens_and_replaced_after_a_split() {
        let learned = Learned::new("h");
        learned.learn_range("s", r#"["a"]"#, "0:1#9#1=9,1:1#5");
        assert_eq!(
            learned.range("s", r#"["a"]"#),
            None,
            "composite: not learned"
        );
        learned.learn_range("s", r#"["a"]"#, "0:1#9#1=9");
        assert_eq!(learned.range("s", r#"["a"]"#).as_deref(), Some("0"));
        learned.learn_range("s", r#"["a"]"#, "4:2#12");
        assert_eq!(learned.range("s", r#"["a"]"#).as_deref(), Some("4"));
        assert_eq!(learned.range("other", r#"["a"]"#), None, "per scope");
    }

    #[test]
    fn reads_the_range_of_single_segment_tokens_only() {
        assert_eq!(single_range_id("3:1#9#1=9"), Some("3"));
        assert_eq!(single_range_id("0:1#5,1:1#5"), None);
        assert_eq!(single_range_id("nonsense"), None);
        assert_eq!(single_range_id(":1#5"), None);
    }
}
