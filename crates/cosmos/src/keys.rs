//! Which broker key an operation uses.
//!
//! Why the partition key is the default: a read of a document, or a query within its partition,
//! needs exactly the writes to that partition key, and everyone who reads it knows it. Its key
//! string is the partition key as JSON, exactly the `x-ms-documentdb-partitionkey` header value
//! (`["user-1"]`, `["a",42]`), so services in other languages can build the same key.

use azure_core::http::headers::AsHeaders;
use azure_data_cosmos::PartitionKey;

/// How the broker key of an operation is chosen.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum KeyStrategy {
    /// The partition key value, as JSON (`["user-1"]`). Covers point reads and queries within the
    /// partition.
    #[default]
    PartitionKey,
    /// The document id. Point reads see the writes to that document; queries have no document id
    /// and go ahead without a broker token under this strategy.
    DocumentId,
    /// A caller-supplied session scope, for example an end-user id: every operation made for that
    /// user shares one token, across partitions. See [`crate::BrokeredContainer::for_session`].
    Session(String),
}

/// Prefix of broker keys under [`KeyStrategy::DocumentId`]. Partition-key keys are JSON arrays
/// (they start with `[`), so the three strategies can never produce the same key: a document id
/// `"o5"` and a session `"o5"` stay apart, in the broker and in this process's memory.
pub const DOCUMENT_ID_PREFIX: &str = "id:";
/// Prefix of broker keys under [`KeyStrategy::Session`].
pub const SESSION_PREFIX: &str = "session:";

/// The JSON form of a partition key, as sent in the partition key header.
pub(crate) fn partition_key_json(partition_key: &PartitionKey) -> Option<String> {
    let mut headers = partition_key.as_headers().ok()?;
    headers.next().map(|(_, value)| value.as_str().to_owned())
}

impl KeyStrategy {
    /// The key for a point operation on (`partition_key`, `item_id`).
    pub(crate) fn item_key(&self, partition_key_json: &str, item_id: &str) -> String {
        match self {
            Self::PartitionKey => partition_key_json.to_owned(),
            Self::DocumentId => format!("{DOCUMENT_ID_PREFIX}{item_id}"),
            Self::Session(session) => format!("{SESSION_PREFIX}{session}"),
        }
    }

    /// The key for a query within one partition; `None` when the strategy has none.
    pub(crate) fn query_key(&self, partition_key_json: &str) -> Option<String> {
        match self {
            Self::PartitionKey => Some(partition_key_json.to_owned()),
            Self::DocumentId => None,
            Self::Session(session) => Some(format!("{SESSION_PREFIX}{session}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_key_json_matches_the_header_form() {
        assert_eq!(
            partition_key_json(&PartitionKey::from("user-1")).as_deref(),
            Some(r#"["user-1"]"#)
        );
        assert_eq!(
            partition_key_json(&PartitionKey::from(("a", 42i64))).as_deref(),
            Some(r#"["a",42]"#)
        );
    }

    #[test]
    fn each_strategy_picks_its_key() {
        let pk = r#"["p"]"#;
        assert_eq!(KeyStrategy::PartitionKey.item_key(pk, "doc"), pk);
        assert_eq!(KeyStrategy::DocumentId.item_key(pk, "doc"), "id:doc");
        assert_eq!(
            KeyStrategy::Session("u1".into()).item_key(pk, "doc"),
            "session:u1"
        );
        assert_ne!(
            KeyStrategy::DocumentId.item_key(pk, "o5"),
            KeyStrategy::Session("o5".into()).item_key(pk, "o5"),
            "strategies never share a key"
        );
        assert_eq!(KeyStrategy::DocumentId.query_key(pk), None);
    }
}
