//! The Redis key layout, versioned: `<namespace>:v1:{<scope>|<key>}`.
//!
//! Why this shape: the `v1` lets a future layout live beside this one during a migration. The
//! braces are a Redis Cluster hash tag around the whole identity, so any later per-token key
//! (`...}:meta`) lands in the same slot; every command today touches exactly one key, so the
//! layout works unchanged on Cluster. `%`, `{`, `}` and `|` inside scope and key are
//! percent-escaped, so the tag is exactly the braces' content and `|` separates unambiguously.

use crate::storage::StoreKey;

/// Layout version, part of every key.
pub const LAYOUT_VERSION: &str = "v1";

/// Builds the Redis keys of one namespace (`redis.namespace`, `tb` by default), in the layout
/// above.
#[derive(Debug, Clone)]
pub struct KeyLayout {
    namespace: String,
}

fn escape(s: &str, out: &mut String) {
    for c in s.chars() {
        match c {
            '%' => out.push_str("%25"),
            '{' => out.push_str("%7B"),
            '}' => out.push_str("%7D"),
            '|' => out.push_str("%7C"),
            c => out.push(c),
        }
    }
}

impl KeyLayout {
    /// The layout of `namespace`, taken as given (`RedisOptions::validate` rejects empty ones and
    /// those with spaces or braces).
    pub fn new(namespace: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
        }
    }

    /// The key holding the token of `key`.
    pub fn redis_key(&self, key: &StoreKey) -> String {
        let mut out =
            String::with_capacity(self.namespace.len() + key.scope.len() + key.name.len() + 8);
        out.push_str(&self.namespace);
        out.push(':');
        out.push_str(LAYOUT_VERSION);
        out.push_str(":{");
        escape(&key.scope, &mut out);
        out.push('|');
        escape(&key.name, &mut out);
        out.push('}');
        out
    }

    /// The marker set on the fallback while the primary may be missing tokens (see `recovery.rs`).
    pub fn primary_behind_marker(&self) -> String {
        format!("{}:{LAYOUT_VERSION}:meta:primary-behind", self.namespace)
    }
}

/// A short, stable stand-in for a Redis key in logs: keys hold scopes and caller keys (end-user
/// ids), which logs must not carry, but an operator correlating two log lines needs an id.
pub(crate) fn log_hash(redis_key: &str) -> String {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::hash::DefaultHasher::new();
    redis_key.hash(&mut hasher);
    format!("{:016x}", hasher.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_tag_and_separator_characters() {
        let k = KeyLayout::new("tb");
        assert_eq!(
            k.redis_key(&StoreKey::new("acct/db/c", "user-1")),
            "tb:v1:{acct/db/c|user-1}"
        );
        assert_eq!(k.redis_key(&StoreKey::new("a|b", "c")), "tb:v1:{a%7Cb|c}");
        assert_eq!(k.redis_key(&StoreKey::new("a", "b|c")), "tb:v1:{a|b%7Cc}");
        assert_eq!(
            k.redis_key(&StoreKey::new("{x}", "100%")),
            "tb:v1:{%7Bx%7D|100%25}"
        );
    }
}
