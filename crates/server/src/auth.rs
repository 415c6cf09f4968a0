//! Authorization at the gRPC edge: the caller's identity, checked against the policy in force.
//!
//! Why in the service and not a tower layer: the decision needs the request's `scope`, which
//! is inside the message; a layer sees only headers. So each RPC asks [`Authorizer::check`]
//! before touching the broker, and a denial is a gRPC status like any other (counted by reason
//! in the metrics, never with a scope or key label).
//!
//! Identities: the URI and DNS subject alternative names of a client certificate verified by
//! mutual TLS (`server.tls.client_ca_file`), and a bearer token (`authorization: Bearer <token>`
//! metadata, for meshes that terminate TLS), compared by SHA-256 in constant time. Without a
//! policy every caller may do everything, as before policies existed.

use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio::sync::watch;
use tonic::Status;
use tonic::metadata::MetadataMap;
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::metrics::Denials;
use crate::policy::{Access, AuthSettings, Policy, Principal};

/// Who is calling, as far as the request shows.
#[derive(Debug, Default)]
pub struct Caller {
    /// URI and DNS subject alternative names of the verified client certificate.
    names: Vec<String>,
    /// SHA-256 of the bearer token, if one was sent.
    bearer_sha256: Option<[u8; 32]>,
}

impl Caller {
    /// Reads the caller from a request's metadata and extensions.
    pub fn from_request(metadata: &MetadataMap, extensions: &tonic::Extensions) -> Self {
        let names = extensions
            .get::<TlsConnectInfo<TcpConnectInfo>>()
            .and_then(|info| info.peer_certs())
            .and_then(|chain| chain.first().map(|leaf| subject_names(leaf.as_ref())))
            .unwrap_or_default();
        let bearer_sha256 = metadata
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(|token| Sha256::digest(token.trim().as_bytes()).into());
        Self {
            names,
            bearer_sha256,
        }
    }
}

/// The URI and DNS subject alternative names of a DER certificate.
fn subject_names(der: &[u8]) -> Vec<String> {
    let Ok((_, cert)) = X509Certificate::from_der(der) else {
        return Vec::new();
    };
    let Ok(Some(san)) = cert.subject_alternative_name() else {
        return Vec::new();
    };
    san.value
        .general_names
        .iter()
        .filter_map(|name| match name {
            GeneralName::URI(uri) => Some((*uri).to_owned()),
            GeneralName::DNSName(dns) => Some((*dns).to_owned()),
            _ => None,
        })
        .collect()
}

/// Checks callers against the policy in force (reloaded in the background).
#[derive(Clone)]
pub struct Authorizer {
    policy: Option<Arc<RwLock<Arc<Policy>>>>,
    denials: Denials,
    reloads: watch::Sender<u64>,
}

impl Authorizer {
    /// Every caller may do everything.
    pub fn allow_all() -> Self {
        Self {
            policy: None,
            denials: Denials::default(),
            reloads: watch::Sender::new(0),
        }
    }

    /// Enforces `policy`.
    pub fn with_policy(policy: Policy) -> Self {
        Self {
            policy: Some(Arc::new(RwLock::new(Arc::new(policy)))),
            ..Self::allow_all()
        }
    }

    /// From the settings: the policy file loaded, or allow-all without one.
    pub fn from_settings(settings: &AuthSettings) -> Result<Self, crate::policy::PolicyError> {
        match &settings.policy_file {
            Some(path) => Ok(Self::with_policy(Policy::load(path)?)),
            None => Ok(Self::allow_all()),
        }
    }

    /// The authorizer, counting its denials in `denials` (the serving server's handles).
    pub fn with_denials(self, denials: Denials) -> Self {
        Self { denials, ..self }
    }

    pub fn enforcing(&self) -> bool {
        self.policy.is_some()
    }

    /// Number of policy reloads so far, pushed on change.
    pub fn reloads(&self) -> watch::Receiver<u64> {
        self.reloads.subscribe()
    }

    /// Allows or refuses a call. `scope` and `access` are `None` for MergeToken, which needs an
    /// authenticated caller only.
    ///
    /// `UNAUTHENTICATED`: no client certificate identity and no recognized bearer token.
    /// `PERMISSION_DENIED`: an identity, but no rule grants `access` on `scope` (the message
    /// names both, never the token).
    pub fn check(
        &self,
        caller: &Caller,
        scope: Option<&str>,
        access: Option<Access>,
    ) -> Result<(), Status> {
        let Some(policy) = &self.policy else {
            return Ok(());
        };
        let policy = Arc::clone(&policy.read().unwrap_or_else(|p| p.into_inner()));
        let applies = |principal: &Principal| match principal {
            Principal::Identity(name) => caller.names.iter().any(|n| n == name),
            Principal::BearerSha256(hash) => caller
                .bearer_sha256
                .is_some_and(|sent| bool::from(sent.ct_eq(hash))),
        };
        let mine: Vec<_> = policy
            .rules
            .iter()
            .filter(|r| applies(&r.principal))
            .collect();
        if caller.names.is_empty() && mine.is_empty() {
            self.denials.unauthenticated.increment(1);
            let reason = if caller.bearer_sha256.is_some() {
                "the bearer token is not recognized"
            } else {
                "no client certificate and no bearer token"
            };
            return Err(Status::unauthenticated(reason));
        }
        let (Some(scope), Some(access)) = (scope, access) else {
            return Ok(());
        };
        if mine.iter().any(|r| r.allows(scope, access)) {
            return Ok(());
        }
        self.denials.permission_denied.increment(1);
        Err(Status::permission_denied(format!(
            "no rule of the policy grants {} access to scope {scope:?}",
            access.as_str()
        )))
    }

    /// Polls the policy file every `auth.reload_interval` and swaps in the new policy when the
    /// file changed and parses; otherwise logs and keeps the policy in force.
    pub async fn watch(self, path: PathBuf, interval: std::time::Duration) {
        let Some(current) = self.policy.clone() else {
            return;
        };
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut seen = std::fs::read(&path).ok();
        loop {
            ticker.tick().await;
            let now = std::fs::read(&path).ok();
            if now == seen {
                continue;
            }
            match Policy::load(&path) {
                Ok(policy) => {
                    let rules = policy.rules.len();
                    *current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(policy);
                    seen = now;
                    self.reloads.send_modify(|n| *n += 1);
                    tracing::info!(rules, "authorization policy reloaded");
                }
                Err(error) => {
                    tracing::warn!(%error, "authorization policy changed but does not load: keeping the policy in force");
                }
            }
        }
    }
}
