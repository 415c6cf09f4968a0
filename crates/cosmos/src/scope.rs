//! The broker scope of a container: `<account host>/<database>/<container>/<_rid>` for a
//! container resolved by [`crate::BrokeredContainer::connect`], or an explicit
//! `account/database/container`.
//!
//! Why a type: tokens of two containers must never mix. A token of another container (or of a
//! container deleted and recreated under the same name) is one the service cannot serve: the
//! SDK (`azure_data_cosmos` 1.0.0, measured on its emulator) fails such a read within
//! milliseconds with 503/20310 after 404/1002 answers, or with a 400 after a recreation. So the
//! scope is built from its parts and checked rather than typed by hand at each call site, and
//! by default it carries the container's resource id, which tells generations apart.

use std::fmt;

/// Why a scope part was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScopeError {
    /// A part is the empty string.
    #[error("scope part `{part}` is empty")]
    Empty {
        /// Which part: `account`, `database`, `container` or `rid`.
        part: &'static str,
    },
    /// A part contains a `/` (it would shift the parts) or a control character. A `/` in the
    /// resource id is not an error: it is written `-`.
    #[error("scope part `{part}` ({value:?}) contains '/' or a control character")]
    InvalidCharacter {
        /// Which part: `account`, `database`, `container` or `rid`.
        part: &'static str,
        /// The part as given (the resource id after its `/` were replaced).
        value: String,
    },
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

    /// The scope of one generation of a container: `<account host>/<database>/<container>/<rid>`,
    /// where `rid` is the container's resource id (`_rid` in its properties). A `/` in the
    /// resource id (never seen in Cosmos ids, but legal base64) is written `-`. This is the
    /// convention every language uses (docs/clients.md).
    pub fn for_generation(
        account_host: &str,
        database: &str,
        container: &str,
        rid: &str,
    ) -> Result<Self, ScopeError> {
        let base = Self::new(account_host, database, container)?;
        let rid = rid.replace('/', "-");
        if rid.is_empty() {
            return Err(ScopeError::Empty { part: "rid" });
        }
        if rid.chars().any(char::is_control) {
            return Err(ScopeError::InvalidCharacter {
                part: "rid",
                value: rid,
            });
        }
        Ok(Self(format!("{}/{rid}", base.0)))
    }

    /// The scope as sent to the broker (`acct/shop/orders`, or with `/<rid>` appended).
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
    fn a_generation_scope_ends_with_the_resource_id() {
        let scope = ContainerScope::for_generation(
            "acct.documents.azure.com",
            "shop",
            "orders",
            "AAAAAYAAAAE=",
        )
        .unwrap();
        assert_eq!(
            scope.as_str(),
            "acct.documents.azure.com/shop/orders/AAAAAYAAAAE="
        );
        assert_eq!(
            ContainerScope::for_generation("h", "d", "c", "a/b")
                .unwrap()
                .as_str(),
            "h/d/c/a-b"
        );
        assert_eq!(
            ContainerScope::for_generation("h", "d", "c", ""),
            Err(ScopeError::Empty { part: "rid" })
        );
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
