//! Size limits on requests, and the validation that enforces them.
//!
//! Why explicit limits: every byte a caller sends may end up stored in Redis and sent back in a
//! Cosmos header (where composites past ~16 KB are rejected), so sizes are bounded at the door
//! with an error that names the field, before anything is stored.

use serde::Deserialize;
use session_token::{PkRangeId, SessionToken};

/// Request size limits. Every field is configurable (`limits.*`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Longest `scope`, in bytes.
    pub max_scope_bytes: usize,
    /// Longest `key`, in bytes.
    pub max_key_bytes: usize,
    /// Longest session token, in bytes.
    pub max_token_bytes: usize,
    /// Most partition key ranges in one token, and in a stored token after merging.
    pub max_segments: usize,
    /// Most tokens in one MergeToken request.
    pub max_merge_tokens: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_scope_bytes: 256,
            max_key_bytes: 2048,
            max_token_bytes: 16 * 1024,
            max_segments: 256,
            max_merge_tokens: 64,
        }
    }
}

/// A request field that breaks the rules: which field, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct InvalidArgument {
    /// The request field at fault, as named in the proto (`scope`, `session_token`), with an
    /// index for a repeated field (`session_tokens[2]`).
    pub field: String,
    /// What is wrong with it, as a phrase that follows the field name (`is required`).
    pub reason: String,
}

impl InvalidArgument {
    fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

impl Limits {
    /// Checks that the limits themselves make sense (all positive).
    pub fn validate(&self) -> Result<(), String> {
        let fields = [
            ("max_scope_bytes", self.max_scope_bytes),
            ("max_key_bytes", self.max_key_bytes),
            ("max_token_bytes", self.max_token_bytes),
            ("max_segments", self.max_segments),
            ("max_merge_tokens", self.max_merge_tokens),
        ];
        match fields.iter().find(|(_, v)| *v == 0) {
            Some((name, _)) => Err(format!("limits.{name} must be at least 1")),
            None => Ok(()),
        }
    }

    /// Validates a `scope` or `key` field: present, bounded, printable.
    pub fn name(&self, field: &str, value: &str, max: usize) -> Result<(), InvalidArgument> {
        if value.is_empty() {
            return Err(InvalidArgument::new(field, "is required"));
        }
        if value.len() > max {
            return Err(InvalidArgument::new(
                field,
                format!("is {} bytes, more than the limit of {max}", value.len()),
            ));
        }
        if value.chars().any(char::is_control) {
            return Err(InvalidArgument::new(field, "contains a control character"));
        }
        Ok(())
    }

    /// Validates a `scope` field: present, at most `max_scope_bytes`, no control characters.
    pub fn scope(&self, value: &str) -> Result<(), InvalidArgument> {
        self.name("scope", value, self.max_scope_bytes)
    }

    /// Validates a `key` field: present, at most `max_key_bytes`, no control characters.
    pub fn key(&self, value: &str) -> Result<(), InvalidArgument> {
        self.name("key", value, self.max_key_bytes)
    }

    /// Parses a session token field within the limits.
    pub fn parse_token(&self, field: &str, value: &str) -> Result<SessionToken, InvalidArgument> {
        if value.is_empty() {
            return Err(InvalidArgument::new(field, "is required"));
        }
        if value.len() > self.max_token_bytes {
            return Err(InvalidArgument::new(
                field,
                format!(
                    "is {} bytes, more than the limit of {}",
                    value.len(),
                    self.max_token_bytes
                ),
            ));
        }
        // Count before parsing, so a huge segment count costs no allocation.
        let segments = value.split(',').count();
        if segments > self.max_segments {
            return Err(InvalidArgument::new(
                field,
                format!(
                    "has {segments} segments, more than the limit of {}",
                    self.max_segments
                ),
            ));
        }
        SessionToken::parse(value).map_err(|e| InvalidArgument::new(field, e.to_string()))
    }

    /// Validates the range ids of a GetToken request.
    pub fn range_ids(&self, field: &str, ids: &[String]) -> Result<(), InvalidArgument> {
        if ids.len() > self.max_segments {
            return Err(InvalidArgument::new(
                field,
                format!(
                    "has {} entries, more than the limit of {}",
                    ids.len(),
                    self.max_segments
                ),
            ));
        }
        for (i, id) in ids.iter().enumerate() {
            PkRangeId::new(id)
                .map_err(|e| InvalidArgument::new(format!("{field}[{i}]"), e.to_string()))?;
        }
        Ok(())
    }
}
