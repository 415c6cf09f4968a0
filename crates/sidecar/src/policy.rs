//! Which containers the sidecar coordinates, and on what key.
//!
//! Why per database or container: some containers do not need read-your-writes across pods
//! (logs, caches, data written once), and coordinating them costs a broker round trip per
//! operation for nothing; others are read per end-user session across partitions. The policy is
//! one string so that it fits one environment variable
//! (`TOKENBROKER_SIDECAR__POLICY="audit=pass-through,shop/carts=session"`): comma-separated
//! `<database>[/<container>]=<mode>` entries, a container's entry taking precedence over its
//! database's, and `sidecar.default_policy` for the rest.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

/// How the operations on a container are coordinated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Brokered, keyed by the partition key value (`["user-1"]`): the default.
    PartitionKey,
    /// Brokered, keyed by the session id in the session header (`session:<id>`), so that one
    /// end-user session spans partitions; requests without the header use the partition key.
    Session,
    /// Forwarded untouched (the session header is still stripped).
    PassThrough,
}

impl Mode {
    /// The name used in the configuration and in metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PartitionKey => "partition-key",
            Self::Session => "session",
            Self::PassThrough => "pass-through",
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A policy that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// A mode other than the three.
    #[error("unknown mode {0:?}: expected partition-key, session or pass-through")]
    UnknownMode(String),
    /// An entry that is not `<database>[/<container>]=<mode>`.
    #[error("entry {0:?} is not <database>[/<container>]=<mode>")]
    Entry(String),
    /// The same database or container named twice.
    #[error("{0:?} is named twice")]
    Duplicate(String),
}

impl FromStr for Mode {
    type Err = PolicyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "partition-key" => Ok(Self::PartitionKey),
            "session" => Ok(Self::Session),
            "pass-through" => Ok(Self::PassThrough),
            other => Err(PolicyError::UnknownMode(other.to_owned())),
        }
    }
}

/// The mode of every container.
#[derive(Debug, Clone)]
pub struct Policy {
    default: Mode,
    databases: HashMap<String, Mode>,
    containers: HashMap<(String, String), Mode>,
}

impl Policy {
    /// Parses `entries` (comma-separated `<database>[/<container>]=<mode>`, possibly empty) over
    /// `default`.
    pub fn parse(default: Mode, entries: &str) -> Result<Self, PolicyError> {
        let mut policy = Self {
            default,
            databases: HashMap::new(),
            containers: HashMap::new(),
        };
        for entry in entries.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let (name, mode) = entry
                .split_once('=')
                .ok_or_else(|| PolicyError::Entry(entry.to_owned()))?;
            let mode: Mode = mode.parse()?;
            let name = name.trim();
            let duplicate = match name.split_once('/') {
                Some((db, coll)) if !db.is_empty() && !coll.is_empty() && !coll.contains('/') => {
                    policy
                        .containers
                        .insert((db.to_owned(), coll.to_owned()), mode)
                        .is_some()
                }
                None if !name.is_empty() => {
                    policy.databases.insert(name.to_owned(), mode).is_some()
                }
                _ => return Err(PolicyError::Entry(entry.to_owned())),
            };
            if duplicate {
                return Err(PolicyError::Duplicate(name.to_owned()));
            }
        }
        Ok(policy)
    }

    /// The mode of a container: its own entry, else its database's, else the default.
    pub fn mode(&self, database: &str, container: &str) -> Mode {
        self.containers
            .get(&(database.to_owned(), container.to_owned()))
            .or_else(|| self.databases.get(database))
            .copied()
            .unwrap_or(self.default)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_container_entry_beats_its_database_which_beats_the_default() {
        let policy = Policy::parse(
            Mode::PartitionKey,
            " audit=pass-through, audit/keep=partition-key,shop/carts=session ",
        )
        .unwrap();
        assert_eq!(policy.mode("audit", "x"), Mode::PassThrough);
        assert_eq!(policy.mode("audit", "keep"), Mode::PartitionKey);
        assert_eq!(policy.mode("shop", "carts"), Mode::Session);
        assert_eq!(policy.mode("shop", "orders"), Mode::PartitionKey);
        let all_off = Policy::parse(Mode::PassThrough, "").unwrap();
        assert_eq!(all_off.mode("shop", "orders"), Mode::PassThrough);
    }

    #[test]
    fn refuses_what_it_cannot_read() {
        assert_eq!(
            Policy::parse(Mode::PartitionKey, "shop=sticky").unwrap_err(),
            PolicyError::UnknownMode("sticky".into())
        );
        assert_eq!(
            Policy::parse(Mode::PartitionKey, "shop").unwrap_err(),
            PolicyError::Entry("shop".into())
        );
        assert_eq!(
            Policy::parse(Mode::PartitionKey, "a/b/c=session").unwrap_err(),
            PolicyError::Entry("a/b/c=session".into())
        );
        assert_eq!(
            Policy::parse(Mode::PartitionKey, "/x=session").unwrap_err(),
            PolicyError::Entry("/x=session".into())
        );
        assert_eq!(
            Policy::parse(Mode::PartitionKey, "shop=session,shop=pass-through").unwrap_err(),
            PolicyError::Duplicate("shop".into())
        );
    }
}
