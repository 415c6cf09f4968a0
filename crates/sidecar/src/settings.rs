//! The sidecar's settings (`sidecar.*`), validated at start-up.
//!
//! Why here and not in the server: the server's configuration loader (defaults < TOML file <
//! `TOKENBROKER_*` environment) embeds this struct as its `sidecar` table, so the same layering,
//! unknown-key refusal and docs test apply; the sidecar's own code only ever sees a validated
//! [`SidecarSettings`]. Every key and its default is in docs/configuration.md.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::policy::{Mode, Policy};

/// `sidecar.*`.
#[derive(Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SidecarSettings {
    /// The application-facing address (the endpoint the application's SDK is given). The
    /// regions' own listeners bind the same IP, on ports the system picks.
    pub listen: String,
    /// The Cosmos DB account endpoint, such as `https://myaccount.documents.azure.com:443/`.
    pub upstream: String,
    /// Comma-separated broker URLs (`http://10.0.0.11:50051,http://10.0.0.12:50051`), or with
    /// [`SidecarSettings::discover`] one URL whose host is a headless Service name.
    pub brokers: String,
    /// Resolve the one URL of `brokers` into every pod behind it, again and again.
    pub discover: bool,
    /// The whole budget of one broker call (GetToken, PutToken), retries included.
    #[serde(with = "humantime_serde")]
    pub broker_deadline: Duration,
    /// PEM CA certificate of the brokers (`https://` broker URLs); unset: the system's roots.
    pub broker_ca: Option<PathBuf>,
    /// Bearer token sent to the brokers (`authorization: Bearer …`). Never logged.
    pub broker_token: Option<String>,
    /// The name the brokers' certificates are checked against when it is not the URL's host:
    /// needed with [`SidecarSettings::discover`] over TLS, whose endpoints are IP addresses
    /// (for example `tokenbroker.<namespace>.svc`).
    pub broker_domain_name: Option<String>,
    /// PEM client certificate for brokers that require one (mutual TLS), with `broker_key`.
    pub broker_cert: Option<PathBuf>,
    /// The private key of `broker_cert`.
    pub broker_key: Option<PathBuf>,
    /// PEM CA certificate(s) the upstream's certificate is verified against, in addition to the
    /// system's roots (an emulator's or a corporate proxy's CA).
    pub upstream_ca: Option<PathBuf>,
    /// PEM certificate chain and key for HTTPS on the application-facing listeners (SDKs that
    /// insist on HTTPS, such as any SDK with Entra ID auth); both unset: plain HTTP.
    pub tls_cert: Option<PathBuf>,
    /// The private key of `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// The mode of containers no entry of `policy` names: `partition-key`, `session` or
    /// `pass-through`.
    pub default_policy: String,
    /// Comma-separated `<database>[/<container>]=<mode>` entries (see [`Policy`]).
    pub policy: String,
    /// The request header carrying the application's session id (stripped before forwarding).
    pub session_header: String,
    /// Largest request body a brokered read (a query) keeps to repeat it without the broker's
    /// token; a larger query is forwarded without the broker's token.
    pub max_replay_body_bytes: usize,
}

impl Default for SidecarSettings {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8081".into(),
            upstream: String::new(),
            brokers: String::new(),
            discover: false,
            broker_deadline: Duration::from_millis(100),
            broker_ca: None,
            broker_token: None,
            broker_domain_name: None,
            broker_cert: None,
            broker_key: None,
            upstream_ca: None,
            tls_cert: None,
            tls_key: None,
            default_policy: "partition-key".into(),
            policy: String::new(),
            session_header: "x-tokenbroker-session".into(),
            max_replay_body_bytes: 256 * 1024,
        }
    }
}

impl std::fmt::Debug for SidecarSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SidecarSettings")
            .field("listen", &self.listen)
            .field("upstream", &self.upstream)
            .field("brokers", &self.brokers)
            .field("discover", &self.discover)
            .field("broker_deadline", &self.broker_deadline)
            .field("broker_ca", &self.broker_ca)
            .field(
                "broker_token",
                &self.broker_token.as_ref().map(|_| "<redacted>"),
            )
            .field("broker_domain_name", &self.broker_domain_name)
            .field("broker_cert", &self.broker_cert)
            .field("broker_key", &self.broker_key)
            .field("upstream_ca", &self.upstream_ca)
            .field("tls_cert", &self.tls_cert)
            .field("tls_key", &self.tls_key)
            .field("default_policy", &self.default_policy)
            .field("policy", &self.policy)
            .field("session_header", &self.session_header)
            .field("max_replay_body_bytes", &self.max_replay_body_bytes)
            .finish()
    }
}

impl SidecarSettings {
    /// The application-facing address.
    pub fn listen_addr(&self) -> Result<SocketAddr, String> {
        self.listen.parse().map_err(|_| {
            format!(
                "sidecar.listen: {:?} is not an address such as 127.0.0.1:8081",
                self.listen
            )
        })
    }

    /// The broker URLs, trimmed, empty entries dropped.
    pub fn broker_urls(&self) -> Vec<String> {
        self.brokers
            .split(',')
            .map(str::trim)
            .filter(|b| !b.is_empty())
            .map(str::to_owned)
            .collect()
    }

    /// The upstream account endpoint, parsed.
    pub fn upstream_uri(&self) -> Result<http::Uri, String> {
        let uri: http::Uri = self.upstream.parse().map_err(|_| {
            format!(
                "sidecar.upstream: {:?} is not a URL such as https://myaccount.documents.azure.com:443/",
                self.upstream
            )
        })?;
        match (uri.scheme_str(), uri.host()) {
            (Some("http" | "https"), Some(_)) => Ok(uri),
            _ => Err(format!(
                "sidecar.upstream: {:?} must be an http:// or https:// URL with a host",
                self.upstream
            )),
        }
    }

    /// The coordination policy.
    pub fn parsed_policy(&self) -> Result<Policy, String> {
        let default: Mode = self
            .default_policy
            .parse()
            .map_err(|e| format!("sidecar.default_policy: {e}"))?;
        Policy::parse(default, &self.policy).map_err(|e| format!("sidecar.policy: {e}"))
    }

    /// Checks values that parse but make no sense. Run by `tokenbroker sidecar` before
    /// anything starts.
    pub fn validate(&self) -> Result<(), String> {
        self.listen_addr()?;
        self.upstream_uri()?;
        let brokers = self.broker_urls();
        if brokers.is_empty() {
            return Err(
                "sidecar.brokers: set at least one broker URL, such as http://tokenbroker:50051"
                    .into(),
            );
        }
        for url in &brokers {
            let ok = url.parse::<http::Uri>().is_ok_and(|u| {
                matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some()
            });
            if !ok {
                return Err(format!(
                    "sidecar.brokers: {url:?} is not an http:// or https:// URL with a host"
                ));
            }
        }
        if self.discover && brokers.len() != 1 {
            return Err(
                "sidecar.brokers: with sidecar.discover = true, give exactly one URL (the headless Service)"
                    .into(),
            );
        }
        let deadline = self.broker_deadline;
        if deadline < Duration::from_millis(1) || deadline > Duration::from_secs(10) {
            return Err("sidecar.broker_deadline: must be between 1ms and 10s".into());
        }
        if self.broker_cert.is_some() != self.broker_key.is_some() {
            return Err("sidecar.broker_cert and sidecar.broker_key: set both or neither".into());
        }
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return Err("sidecar.tls_cert and sidecar.tls_key: set both or neither".into());
        }
        self.parsed_policy()?;
        let reserved = ["authorization", "host", "content-length", "content-type"];
        let lower = self.session_header.to_ascii_lowercase();
        if lower.starts_with("x-ms-") || reserved.contains(&lower.as_str()) {
            return Err(format!(
                "sidecar.session_header: {:?} is a header Cosmos or HTTP needs (the sidecar strips \
                 the session header from every request): pick another, such as x-tokenbroker-session",
                self.session_header
            ));
        }
        if http::HeaderName::from_bytes(self.session_header.as_bytes()).is_err() {
            return Err(format!(
                "sidecar.session_header: {:?} is not an HTTP header name",
                self.session_header
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid() -> SidecarSettings {
        SidecarSettings {
            upstream: "https://acct.documents.azure.com:443/".into(),
            brokers: "http://a:50051, http://b:50051".into(),
            ..SidecarSettings::default()
        }
    }

    #[test]
    fn a_valid_configuration_passes() {
        assert_eq!(valid().validate(), Ok(()));
        assert_eq!(
            valid().broker_urls(),
            vec!["http://a:50051".to_owned(), "http://b:50051".to_owned()]
        );
    }

    #[test]
    fn each_bad_value_is_named() {
        let cases: Vec<(SidecarSettings, &str)> = vec![
            (
                SidecarSettings {
                    upstream: String::new(),
                    ..valid()
                },
                "sidecar.upstream",
            ),
            (
                SidecarSettings {
                    upstream: "ftp://x/".into(),
                    ..valid()
                },
                "sidecar.upstream",
            ),
            (
                SidecarSettings {
                    brokers: " , ".into(),
                    ..valid()
                },
                "sidecar.brokers",
            ),
            (
                SidecarSettings {
                    brokers: "tokenbroker:50051".into(),
                    ..valid()
                },
                "sidecar.brokers",
            ),
            (
                SidecarSettings {
                    discover: true,
                    ..valid()
                },
                "sidecar.brokers",
            ),
            (
                SidecarSettings {
                    listen: "localhost".into(),
                    ..valid()
                },
                "sidecar.listen",
            ),
            (
                SidecarSettings {
                    broker_deadline: Duration::ZERO,
                    ..valid()
                },
                "sidecar.broker_deadline",
            ),
            (
                SidecarSettings {
                    session_header: "x-ms-session-token".into(),
                    ..valid()
                },
                "sidecar.session_header",
            ),
            (
                SidecarSettings {
                    broker_key: Some("k.pem".into()),
                    ..valid()
                },
                "sidecar.broker_cert",
            ),
            (
                SidecarSettings {
                    tls_cert: Some("c.pem".into()),
                    ..valid()
                },
                "sidecar.tls_cert",
            ),
            (
                SidecarSettings {
                    default_policy: "on".into(),
                    ..valid()
                },
                "sidecar.default_policy",
            ),
            (
                SidecarSettings {
                    policy: "shop".into(),
                    ..valid()
                },
                "sidecar.policy",
            ),
            (
                SidecarSettings {
                    session_header: "bad header".into(),
                    ..valid()
                },
                "sidecar.session_header",
            ),
        ];
        for (settings, key) in cases {
            let error = settings.validate().unwrap_err();
            assert!(error.starts_with(key), "{error:?} should name {key}");
        }
    }

    #[test]
    fn the_broker_token_is_redacted() {
        let settings = SidecarSettings {
            broker_token: Some("s3cret".into()),
            ..valid()
        };
        let shown = format!("{settings:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains("<redacted>"));
    }
}
