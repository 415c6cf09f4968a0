//! The authorization policy file (`auth.policy_file`): who may read and write which scopes.
//!
//! Why a file of allow rules and nothing else: platform teams hand each service access to its
//! own containers and nothing more, and a deny-by-default list is what they can review. A
//! rule names one identity (a URI or DNS subject alternative name of a client certificate,
//! exact) or one bearer token (by its SHA-256, so the file holds no secret), the scope
//! patterns it covers (`*` at the end matches any rest) and the access it grants (`read`:
//! GetToken; `write`: PutToken and DiscardToken). The file is reloaded when it changes; a
//! change that does not parse is logged and the policy in force kept.
//!
//! ```toml
//! [[allow]]
//! identity = "spiffe://cluster.local/ns/orders/sa/api"
//! scopes = ["myacct/orders-db/*"]
//! access = ["read", "write"]
//!
//! [[allow]]
//! bearer_token_sha256 = "<64 hex digits>"
//! scopes = ["myacct/reports/*"]
//! access = ["read"]
//! ```

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// `auth.*`: the authorization policy. Off (every caller may do everything) unless
/// `policy_file` is set.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct AuthSettings {
    /// The policy file (TOML, see the module docs).
    pub policy_file: Option<PathBuf>,
    /// How often the file is checked for changes; default 10s.
    #[serde(with = "humantime_serde::option")]
    pub reload_interval: Option<Duration>,
}

/// The default of `auth.reload_interval`.
pub const DEFAULT_RELOAD_INTERVAL: Duration = Duration::from_secs(10);

impl AuthSettings {
    pub fn reload_interval(&self) -> Duration {
        self.reload_interval.unwrap_or(DEFAULT_RELOAD_INTERVAL)
    }

    /// Checks that the policy file loads (at start-up: a bad policy stops the process).
    pub fn validate(&self) -> Result<(), String> {
        let interval = self.reload_interval();
        if interval < Duration::from_millis(10) || interval > Duration::from_secs(3600) {
            return Err("auth.reload_interval: must be between 10ms and 1h".into());
        }
        match &self.policy_file {
            Some(path) => Policy::load(path).map(|_| ()).map_err(|e| e.to_string()),
            None => Ok(()),
        }
    }
}

/// What a rule grants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Access {
    /// GetToken.
    Read,
    /// PutToken and DiscardToken.
    Write,
}

impl Access {
    pub fn as_str(self) -> &'static str {
        match self {
            Access::Read => "read",
            Access::Write => "write",
        }
    }
}

/// Who a rule is for.
#[derive(Clone, PartialEq, Eq)]
pub enum Principal {
    /// A URI or DNS subject alternative name of a verified client certificate.
    Identity(String),
    /// The SHA-256 of a bearer token.
    BearerSha256([u8; 32]),
}

impl std::fmt::Debug for Principal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Principal::Identity(id) => write!(f, "Identity({id:?})"),
            Principal::BearerSha256(_) => f.write_str("BearerSha256(<redacted>)"),
        }
    }
}

/// One allow rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub principal: Principal,
    scopes: Vec<String>,
    access: Vec<Access>,
}

impl Rule {
    /// True when the rule grants `access` on `scope`.
    pub fn allows(&self, scope: &str, access: Access) -> bool {
        self.access.contains(&access) && self.scopes.iter().any(|p| scope_matches(p, scope))
    }
}

/// `pattern` matches `scope`: exactly, or, for a pattern ending in `*`, by its prefix.
fn scope_matches(pattern: &str, scope: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => scope.starts_with(prefix),
        None => pattern == scope,
    }
}

/// The rules in force.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Policy {
    pub rules: Vec<Rule>,
}

/// Why a policy file was refused.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("auth.policy_file: cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("auth.policy_file: {path}: {reason}")]
    Invalid { path: String, reason: String },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    allow: Vec<RawRule>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    identity: Option<String>,
    bearer_token_sha256: Option<String>,
    scopes: Vec<String>,
    access: Vec<Access>,
}

impl Policy {
    /// Reads and checks a policy file.
    pub fn load(path: &Path) -> Result<Self, PolicyError> {
        let text = std::fs::read_to_string(path).map_err(|source| PolicyError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text).map_err(|reason| PolicyError::Invalid {
            path: path.display().to_string(),
            reason,
        })
    }

    /// Parses a policy; the error names the rule (`allow[2]`) and the field.
    pub fn parse(text: &str) -> Result<Self, String> {
        // toml's messages quote the offending line, which may hold a token hash: keep only the
        // position and the reason's first line.
        let file: File = toml::from_str(text).map_err(|e| {
            let reason = e
                .message()
                .lines()
                .next()
                .unwrap_or("invalid TOML")
                .to_owned();
            match e.span() {
                Some(span) => format!("invalid TOML at byte {}: {reason}", span.start),
                None => format!("invalid TOML: {reason}"),
            }
        })?;
        let rules = file
            .allow
            .into_iter()
            .enumerate()
            .map(|(i, raw)| rule(raw).map_err(|reason| format!("allow[{i}]: {reason}")))
            .collect::<Result<_, _>>()?;
        Ok(Self { rules })
    }
}

fn rule(raw: RawRule) -> Result<Rule, String> {
    let principal = match (raw.identity, raw.bearer_token_sha256) {
        (Some(identity), None) if !identity.is_empty() => Principal::Identity(identity),
        (None, Some(hex)) => Principal::BearerSha256(sha256_hex(&hex)?),
        (Some(_), Some(_)) => {
            return Err("set identity or bearer_token_sha256, not both".into());
        }
        _ => return Err("needs identity or bearer_token_sha256".into()),
    };
    if raw.scopes.is_empty() {
        return Err("scopes: needs at least one pattern".into());
    }
    for (i, pattern) in raw.scopes.iter().enumerate() {
        let stars = pattern.matches('*').count();
        if pattern.is_empty() || stars > 1 || (stars == 1 && !pattern.ends_with('*')) {
            return Err(format!(
                "scopes[{i}]: {pattern:?} is not a scope or a prefix ending in '*'"
            ));
        }
    }
    if raw.access.is_empty() {
        return Err("access: needs \"read\", \"write\" or both".into());
    }
    Ok(Rule {
        principal,
        scopes: raw.scopes,
        access: raw.access,
    })
}

fn sha256_hex(hex: &str) -> Result<[u8; 32], String> {
    let bad = || "bearer_token_sha256: must be 64 hexadecimal digits (a SHA-256)".to_owned();
    if hex.len() != 64 {
        return Err(bad());
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2).ok_or_else(bad)?, 16)
            .map_err(|_| bad())?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const HASH: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

    #[test]
    fn parses_identity_and_bearer_rules() {
        let policy = Policy::parse(&format!(
            "[[allow]]\nidentity = \"spiffe://c/ns/a/sa/api\"\nscopes = [\"acct/a/*\"]\n\
             access = [\"read\", \"write\"]\n\n[[allow]]\nbearer_token_sha256 = \"{HASH}\"\n\
             scopes = [\"acct/r/x\"]\naccess = [\"read\"]\n"
        ))
        .unwrap();
        assert_eq!(policy.rules.len(), 2);
        let (a, r) = (&policy.rules[0], &policy.rules[1]);
        assert!(a.allows("acct/a/orders", Access::Write));
        assert!(!a.allows("acct/b/orders", Access::Read));
        assert!(r.allows("acct/r/x", Access::Read));
        assert!(!r.allows("acct/r/x", Access::Write));
        assert!(!r.allows("acct/r/xy", Access::Read), "no '*': exact");
        assert!(!format!("{r:?}").contains(HASH), "{r:?}");
    }

    #[test]
    fn refusals_name_the_rule_and_field() {
        let cases = [
            (
                "[[allow]]\nscopes=[\"a\"]\naccess=[\"read\"]",
                "allow[0]: needs identity",
            ),
            (
                "[[allow]]\nidentity=\"x\"\nscopes=[]\naccess=[\"read\"]",
                "allow[0]: scopes: needs",
            ),
            (
                "[[allow]]\nidentity=\"x\"\nscopes=[\"a/*/b\"]\naccess=[\"read\"]",
                "scopes[0]: \"a/*/b\" is not",
            ),
            (
                "[[allow]]\nidentity=\"x\"\nscopes=[\"a\"]\naccess=[]",
                "access: needs",
            ),
            (
                "[[allow]]\nbearer_token_sha256=\"abc\"\nscopes=[\"a\"]\naccess=[\"read\"]",
                "must be 64 hexadecimal digits",
            ),
            (
                "[[allow]]\nidentity=\"x\"\nscopes=[\"a\"]\naccess=[\"admin\"]",
                "invalid TOML",
            ),
            ("[[deny]]\nidentity=\"x\"", "invalid TOML"),
        ];
        for (text, want) in cases {
            let error = Policy::parse(text).unwrap_err();
            assert!(error.contains(want), "{text:?}: {error}");
        }
    }
}
