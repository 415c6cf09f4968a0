//! The broker scope of a container: `account/database/container`.
//!
//! Why a type: tokens of two containers must never mix (a token for the wrong container makes the
//! service retry 404/1002 for about 30 s), so the scope is built from its three parts and checked
//! rather than typed by hand at each call site.

use std::fmt;

/// Why a scope part was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScopeError {
    #[error("scope part `{part}` is empty")]
    Empty { part: &'static str },
    #[error("scope part `{part}` ({value:?}) contains '/' or a control character")]
    InvalidCharacter { part: &'static str, value: String },
}

/// Names one container for the broker: `account/database/container`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ContainerScope(String);

impl ContainerScope {
    /// `account` is the account name (for example the host name's first label), then the
    /// database and container names.
    pub fn new(account: &str, database: &str, container: &str) -> Result<Self, ScopeError> {
        for (part, value) in [
            ("account", account),
            ("database", database),
            ("container", container),
        ] {
            if value.is_empty() {
                return Err(ScopeError::Empty { part });
            }
            if value.chars().any(|c| c == '/' || c.is_control()) {
                return Err(ScopeError::InvalidCharacter {
                    part,
                    value: value.to_owned(),
                });
            }
        }
        Ok(Self(format!("{account}/{database}/{container}")))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ContainerScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joins_the_three_parts() {
        let scope = ContainerScope::new("acct", "shop", "orders").unwrap();
        assert_eq!(scope.as_str(), "acct/shop/orders");
    }

    #[test]
    fn refuses_empty_parts_and_slashes() {
        assert_eq!(
            ContainerScope::new("acct", "", "orders"),
            Err(ScopeError::Empty { part: "database" })
        );
        assert!(matches!(
            ContainerScope::new("acct", "shop", "a/b"),
            Err(ScopeError::InvalidCharacter {
                part: "container",
                ..
            })
        ));
    }
}
