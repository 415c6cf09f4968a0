//! Server configuration: defaults < TOML file < `TOKENBROKER_*` environment variables.
//!
//! Why layered and validated up front: operators set a few knobs per environment (Kubernetes
//! env vars, a mounted file), and a typo or a nonsensical value should stop the process at
//! start-up with a clear message rather than surface as odd behaviour under load. Unknown keys
//! are errors for the same reason. Every key and its default is listed in docs/configuration.md.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use broker::Limits;
use broker::storage::redis::RedisOptions;
use serde::Deserialize;

use crate::policy::AuthSettings;
use crate::tls::TlsSettings;

/// Prefix of the environment variables; nested keys are joined with `__`
/// (`TOKENBROKER_LIMITS__MAX_KEY_BYTES`).
pub const ENV_PREFIX: &str = "TOKENBROKER";

/// Prefix of the CLI's own environment variables (`TOKENBROKER_CLI_BROKER`...), which the
/// server's configuration ignores.
pub const CLI_ENV_PREFIX: &str = "TOKENBROKER_CLI_";

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Address the gRPC server listens on.
    pub listen: String,
    pub log: LogSettings,
    pub token: TokenSettings,
    pub limits: Limits,
    pub memory: MemorySettings,
    pub redis: RedisOptions,
    pub metrics: MetricsSettings,
    pub telemetry: TelemetrySettings,
    pub server: ServerSettings,
    pub auth: AuthSettings,
    pub shutdown: ShutdownSettings,
    /// `tokenbroker sidecar` only (validated when the sidecar starts; `serve` ignores it).
    pub sidecar: tokenbroker_sidecar::SidecarSettings,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            listen: "0.0.0.0:50051".into(),
            log: LogSettings::default(),
            token: TokenSettings::default(),
            limits: Limits::default(),
            memory: MemorySettings::default(),
            redis: RedisOptions::default(),
            metrics: MetricsSettings::default(),
            telemetry: TelemetrySettings::default(),
            server: ServerSettings::default(),
            auth: AuthSettings::default(),
            shutdown: ShutdownSettings::default(),
            sidecar: tokenbroker_sidecar::SidecarSettings::default(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Human,
    Json,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogSettings {
    /// `human` or `json`.
    pub format: LogFormat,
    /// A tracing filter directive, such as `info` or `tokenbroker=debug,info`. `RUST_LOG`, when
    /// set, takes precedence.
    pub level: String,
}

impl Default for LogSettings {
    fn default() -> Self {
        Self {
            format: LogFormat::Human,
            level: "info".into(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TokenSettings {
    /// How long a stored token lives after its last PutToken.
    #[serde(with = "humantime_serde")]
    pub ttl: Duration,
}

impl Default for TokenSettings {
    fn default() -> Self {
        Self {
            ttl: Duration::from_secs(3600),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MemorySettings {
    /// Most keys the in-memory store holds at once (one bound for the whole store; an expired
    /// key counts until the sweeper removes it, within about a second).
    pub max_keys: usize,
}

impl Default for MemorySettings {
    fn default() -> Self {
        Self {
            max_keys: 1_000_000,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsSettings {
    /// Address of the Prometheus scrape endpoint (`/metrics`); empty disables it.
    pub listen: String,
}

impl Default for MetricsSettings {
    fn default() -> Self {
        Self {
            listen: "0.0.0.0:9464".into(),
        }
    }
}

/// Trace export (docs/observability.md).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TelemetrySettings {
    /// OTLP/gRPC endpoint of a collector, such as `http://otel-collector:4317`. Unset or empty:
    /// no trace export at all.
    pub otlp_endpoint: Option<String>,
    /// The `service.name` resource attribute of exported spans.
    pub service_name: String,
    /// Fraction of traces started here (requests without a sampled `traceparent`) that are
    /// recorded; a caller's sampling decision is always followed.
    pub sampling_ratio: f64,
    /// Most time between two exports of batched spans.
    #[serde(with = "humantime_serde")]
    pub export_interval: Duration,
}

impl Default for TelemetrySettings {
    fn default() -> Self {
        Self {
            otlp_endpoint: None,
            service_name: "tokenbroker".into(),
            sampling_ratio: 1.0,
            export_interval: Duration::from_secs(5),
        }
    }
}

impl TelemetrySettings {
    /// The endpoint, if trace export is on.
    pub fn endpoint(&self) -> Option<&str> {
        self.otlp_endpoint.as_deref().filter(|e| !e.is_empty())
    }

    fn validate(&self) -> Result<(), String> {
        if let Some(e) = self.endpoint() {
            let parsed = e.parse::<tonic::transport::Uri>();
            let ok = parsed.is_ok_and(|u| u.scheme_str() == Some("http") && u.host().is_some());
            if !ok {
                return Err(format!(
                    "telemetry.otlp_endpoint: {e:?} is not a plaintext OTLP/gRPC address such as \
                     http://otel-collector:4317 (https is not supported: use a local collector)"
                ));
            }
        }
        if self.service_name.is_empty() {
            return Err("telemetry.service_name: must not be empty".into());
        }
        if !(0.0..=1.0).contains(&self.sampling_ratio) {
            return Err("telemetry.sampling_ratio: must be between 0 and 1".into());
        }
        let interval = self.export_interval;
        if interval < Duration::from_millis(10) || interval > Duration::from_secs(600) {
            return Err("telemetry.export_interval: must be between 10ms and 10m".into());
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerSettings {
    /// Largest gRPC request message the server decodes, in bytes.
    pub max_message_bytes: usize,
    /// Most concurrent requests per HTTP/2 connection.
    pub max_concurrent_streams: u32,
    /// Age at which the server asks a client connection to go away (HTTP/2 GOAWAY, graceful:
    /// calls in flight finish), so that clients reconnect and spread over the replicas that
    /// scaling or a rollout added. Zero disables it.
    #[serde(with = "humantime_serde")]
    pub max_connection_age: Duration,
    /// TLS on the gRPC port (`server.tls.*`); off unless the certificate files are set.
    pub tls: TlsSettings,
    /// With TLS on, `grpc.health.v1.Health` is also served here in plaintext, alone, for
    /// probes that speak neither TLS nor auth (Kubernetes' native gRPC probe).
    pub health_listen: String,
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            max_message_bytes: 2 * 1024 * 1024,
            max_concurrent_streams: 1024,
            max_connection_age: Duration::from_secs(300),
            tls: TlsSettings::default(),
            health_listen: "0.0.0.0:50052".into(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ShutdownSettings {
    /// After SIGTERM, how long readiness reports NOT_SERVING before the server stops accepting
    /// calls, so that load balancers stop routing here first.
    #[serde(with = "humantime_serde")]
    pub readiness_delay: Duration,
    /// Then, how long in-flight calls may take to finish before the process exits anyway.
    #[serde(with = "humantime_serde")]
    pub drain_timeout: Duration,
}

impl Default for ShutdownSettings {
    fn default() -> Self {
        Self {
            readiness_delay: Duration::from_secs(2),
            drain_timeout: Duration::from_secs(15),
        }
    }
}

/// A configuration that cannot be loaded or makes no sense.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot load configuration: {0}")]
    Load(#[from] config::ConfigError),
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

impl Settings {
    /// Loads defaults, then the TOML file (if given), then the environment.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        Self::load_from(file, std::env::vars())
    }

    /// As [`Settings::load`], with the environment given explicitly (for tests).
    pub fn load_from(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let mut builder = config::Config::builder();
        if let Some(path) = file {
            builder = builder.add_source(
                config::File::from(path)
                    .format(config::FileFormat::Toml)
                    .required(true),
            );
        }
        // TOKENBROKER_CLI_* belong to the CLI's client commands (`--broker` and the like), not
        // to the server's configuration.
        let env: config::Map<String, String> = env
            .into_iter()
            .filter(|(k, _)| {
                k.starts_with(&format!("{ENV_PREFIX}_")) && !k.starts_with(CLI_ENV_PREFIX)
            })
            .collect();
        builder = builder.add_source(
            config::Environment::with_prefix(ENV_PREFIX)
                .prefix_separator("_")
                .separator("__")
                .source(Some(env)),
        );
        let settings: Settings = builder.build()?.try_deserialize()?;
        settings.validate()?;
        Ok(settings)
    }

    /// Checks values that parse but make no sense.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |m: String| Err(ConfigError::Invalid(m));
        if self.listen.parse::<SocketAddr>().is_err() {
            return invalid(format!(
                "listen: {:?} is not an address such as 0.0.0.0:50051",
                self.listen
            ));
        }
        if !self.metrics.listen.is_empty() && self.metrics.listen.parse::<SocketAddr>().is_err() {
            return invalid(format!(
                "metrics.listen: {:?} is not an address such as 0.0.0.0:9464 (or empty to disable)",
                self.metrics.listen
            ));
        }
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&self.log.level) {
            return invalid(format!("log.level: {e}"));
        }
        self.telemetry.validate().map_err(ConfigError::Invalid)?;
        let ttl = self.token.ttl;
        if ttl < Duration::from_secs(1) || ttl > Duration::from_secs(30 * 86_400) {
            return invalid("token.ttl: must be between 1s and 30days".into());
        }
        self.limits.validate().map_err(ConfigError::Invalid)?;
        if self.memory.max_keys == 0 {
            return invalid("memory.max_keys: must be at least 1".into());
        }
        self.redis.validate().map_err(ConfigError::Invalid)?;
        if self.server.max_message_bytes < self.limits.max_token_bytes {
            return invalid(
                "server.max_message_bytes: must be at least limits.max_token_bytes".into(),
            );
        }
        let day = Duration::from_secs(86_400);
        if self.shutdown.readiness_delay > day || self.shutdown.drain_timeout > day {
            return invalid(
                "shutdown.readiness_delay and shutdown.drain_timeout: at most 1day".into(),
            );
        }
        self.server.tls.validate().map_err(ConfigError::Invalid)?;
        if self.server.tls.enabled() && self.server.health_listen.parse::<SocketAddr>().is_err() {
            return invalid(format!(
                "server.health_listen: {:?} is not an address such as 0.0.0.0:50052 (needed \
                 with TLS on: probes cannot speak TLS)",
                self.server.health_listen
            ));
        }
        self.auth.validate().map_err(ConfigError::Invalid)?;
        if self.server.max_concurrent_streams == 0 {
            return invalid("server.max_concurrent_streams: must be at least 1".into());
        }
        let age = self.server.max_connection_age;
        if !age.is_zero() && (age < Duration::from_secs(1) || age > day) {
            return invalid(
                "server.max_connection_age: must be 0s (disabled) or between 1s and 1day".into(),
            );
        }
        Ok(())
    }

    pub fn listen_addr(&self) -> Result<SocketAddr, ConfigError> {
        self.listen
            .parse()
            .map_err(|_| ConfigError::Invalid(format!("listen: {:?}", self.listen)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_validate() {
        let s = Settings::load_from(None, env(&[])).unwrap();
        assert_eq!(s.listen, "0.0.0.0:50051");
        assert_eq!(s.token.ttl, Duration::from_secs(3600));
        assert_eq!(s.limits, Limits::default());
    }

    #[test]
    fn environment_overrides_file_overrides_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tb.toml");
        std::fs::write(
            &path,
            "listen = \"127.0.0.1:6000\"\n[token]\nttl = \"10m\"\n[limits]\nmax_key_bytes = 100\n",
        )
        .unwrap();
        let s = Settings::load_from(
            Some(&path),
            env(&[
                ("TOKENBROKER_LISTEN", "127.0.0.1:7000"),
                ("TOKENBROKER_LIMITS__MAX_SEGMENTS", "9"),
                ("TOKENBROKER_SHUTDOWN__READINESS_DELAY", "250ms"),
                ("TOKENBROKER_LOG__FORMAT", "json"),
                ("UNRELATED", "x"),
            ]),
        )
        .unwrap();
        assert_eq!(s.listen, "127.0.0.1:7000");
        assert_eq!(s.token.ttl, Duration::from_secs(600));
        assert_eq!(s.limits.max_key_bytes, 100);
        assert_eq!(s.limits.max_segments, 9);
        assert_eq!(s.shutdown.readiness_delay, Duration::from_millis(250));
        assert_eq!(s.log.format, LogFormat::Json);
    }

    #[test]
    fn redis_urls_come_from_the_environment_and_stay_redacted() {
        let s = Settings::load_from(
            None,
            env(&[
                (
                    "TOKENBROKER_REDIS__PRIMARY_URL",
                    "redis://app:s3cret@10.0.0.1:6379/0",
                ),
                ("TOKENBROKER_REDIS__FALLBACK_URL", "redis://10.0.0.2:6379"),
                ("TOKENBROKER_REDIS__READ_MODE", "primary"),
            ]),
        )
        .unwrap();
        let primary = s.redis.primary_url.as_ref().unwrap();
        assert_eq!(primary.expose(), "redis://app:s3cret@10.0.0.1:6379/0");
        assert!(!format!("{s:?}").contains("s3cret"));
        assert_eq!(s.redis.read_mode, broker::storage::redis::ReadMode::Primary);
        let bad = Settings::load_from(
            None,
            env(&[("TOKENBROKER_REDIS__PRIMARY_URL", "http://u:s3cret@h")]),
        )
        .unwrap_err()
        .to_string();
        assert!(
            bad.contains("primary_url") || bad.contains("redis://"),
            "{bad}"
        );
        assert!(!bad.contains("s3cret"), "{bad}");
    }

    /// docs/configuration.md lists real keys with their real defaults, and its example parses.
    #[test]
    fn the_copy_queue_settings_earlier_names_are_still_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tb.toml");
        std::fs::write(&path, "[redis]\nfallback_batch = 7\n").unwrap();
        let s = Settings::load_from(
            Some(&path),
            env(&[("TOKENBROKER_REDIS__FALLBACK_QUEUE_CAPACITY", "123")]),
        )
        .unwrap();
        assert_eq!(s.redis.copy_queue_capacity, 123);
        assert_eq!(s.redis.copy_batch, 7);
    }

    #[test]
    fn documented_keys_and_defaults_load() {
        let doc = include_str!("../../../docs/configuration.md");
        let sidecar_defaults = format!("{:?}", tokenbroker_sidecar::SidecarSettings::default());
        let mut rows = 0;
        for line in doc.lines().filter(|l| l.starts_with("| `")) {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            let (key, var, default) = (
                cells[1].trim_matches('`'),
                cells[2].trim_matches('`'),
                cells[3],
            );
            assert_eq!(
                var,
                format!("{ENV_PREFIX}_{}", key.to_uppercase().replace('.', "__")),
                "the variable of {key}"
            );
            if default == "unset" {
                continue;
            }
            let value = default.trim_matches('`');
            let loaded = Settings::load_from(None, env(&[(var, value)]))
                .unwrap_or_else(|e| panic!("{var}={value}: {e}"));
            // A sidecar key set to its documented default changes nothing: it is the default.
            // (Not checked for every key: some defaults are applied where they are used, from
            // an unset Option, such as server.tls.reload_interval.)
            if key.starts_with("sidecar.") {
                assert_eq!(
                    format!("{:?}", loaded.sidecar),
                    sidecar_defaults,
                    "{key}: the documented default {value} is not the default"
                );
            }
            rows += 1;
        }
        assert!(rows >= 25, "only {rows} documented keys found");
        // Every sidecar key is documented (its fields, from the Debug form, which names each).
        let fields = sidecar_defaults
            .trim_start_matches("SidecarSettings { ")
            .trim_end_matches(" }")
            .split(", ")
            .filter_map(|field| field.split_once(": ").map(|(name, _)| name));
        for field in fields {
            assert!(
                doc.contains(&format!("| `sidecar.{field}` |")),
                "sidecar.{field} is not in docs/configuration.md"
            );
        }
        let example = doc
            .split("```toml")
            .nth(1)
            .and_then(|rest| rest.split("```").next())
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("example.toml");
        std::fs::write(&path, example).unwrap();
        let s = Settings::load_from(Some(&path), env(&[])).unwrap();
        assert!(s.redis.primary_url.is_some());
    }

    #[test]
    fn max_connection_age_defaults_to_five_minutes_and_zero_disables_it() {
        let s = Settings::load_from(None, env(&[])).unwrap();
        assert_eq!(s.server.max_connection_age, Duration::from_secs(300));
        let s = Settings::load_from(
            None,
            env(&[("TOKENBROKER_SERVER__MAX_CONNECTION_AGE", "0s")]),
        )
        .unwrap();
        assert!(s.server.max_connection_age.is_zero());
    }

    #[test]
    fn telemetry_is_off_by_default_and_an_empty_endpoint_keeps_it_off() {
        let s = Settings::load_from(None, env(&[])).unwrap();
        assert_eq!(s.telemetry.endpoint(), None);
        let s = Settings::load_from(None, env(&[("TOKENBROKER_TELEMETRY__OTLP_ENDPOINT", "")]))
            .unwrap();
        assert_eq!(s.telemetry.endpoint(), None);
        let s = Settings::load_from(
            None,
            env(&[
                ("TOKENBROKER_TELEMETRY__OTLP_ENDPOINT", "http://otel:4317"),
                ("TOKENBROKER_TELEMETRY__SAMPLING_RATIO", "0.25"),
            ]),
        )
        .unwrap();
        assert_eq!(s.telemetry.endpoint(), Some("http://otel:4317"));
        assert_eq!(s.telemetry.sampling_ratio, 0.25);
    }

    #[test]
    fn bad_values_and_unknown_keys_are_refused_with_the_key_named() {
        let cases = [
            (("TOKENBROKER_LISTEN", "nowhere"), "listen"),
            (("TOKENBROKER_TOKEN__TTL", "0s"), "token.ttl"),
            (("TOKENBROKER_TOKEN__TTL", "soon"), "ttl"),
            (
                ("TOKENBROKER_LIMITS__MAX_SEGMENTS", "0"),
                "limits.max_segments",
            ),
            (("TOKENBROKER_LIMITS__MAX_SEGMENTS", "many"), "max_segments"),
            (("TOKENBROKER_LISTN", "127.0.0.1:1"), "listn"),
            (("TOKENBROKER_LOG__FORMAT", "xml"), "xml"),
            (
                ("TOKENBROKER_TELEMETRY__OTLP_ENDPOINT", "otel:4317"),
                "telemetry.otlp_endpoint",
            ),
            (
                ("TOKENBROKER_TELEMETRY__OTLP_ENDPOINT", "https://otel:4317"),
                "telemetry.otlp_endpoint",
            ),
            (
                ("TOKENBROKER_TELEMETRY__SAMPLING_RATIO", "1.5"),
                "telemetry.sampling_ratio",
            ),
            (
                ("TOKENBROKER_SERVER__MAX_CONNECTION_AGE", "10ms"),
                "server.max_connection_age",
            ),
            (
                ("TOKENBROKER_SERVER__MAX_CONNECTION_AGE", "2days"),
                "server.max_connection_age",
            ),
        ];
        for ((k, v), needle) in cases {
            let err = Settings::load_from(None, env(&[(k, v)]))
                .unwrap_err()
                .to_string();
            assert!(err.contains(needle), "{k}={v}: {err}");
        }
    }
}
