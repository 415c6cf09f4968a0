//! TLS for a topology's servers: each node gets a TLS port beside its plain one, and speaks TLS
//! to the other nodes (`--tls-replication yes`, and `--tls-cluster yes` for the cluster bus).
//!
//! Why keep the plain ports: the kit's own probes and `redis-cli --cluster` use them, so none of
//! the kit's waiting needs a TLS client, while everything a client discovers through the
//! topology is a TLS port: a Redis Cluster node answers `CLUSTER SLOTS` with the TLS ports to a
//! TLS client and the plain ports to a plain one; a replica announces its TLS port with
//! `--tls-replication yes`; and the sentinels monitor the master's TLS port. A broker given the
//! TLS URL ([`crate::RedisCluster::tls_url`], [`crate::RedisSentinel::tls_url`]) therefore
//! reaches every node over TLS. What servers report in TLS ports (ROLE of a replica, the
//! sentinels' answers) the kit maps back to the plain ones with [`TlsPorts::plain`].
//!
//! The certificates are the caller's (the kit makes none): a server certificate valid for
//! `127.0.0.1` and `localhost`, its key, and the CA that signed it, which the nodes also use to
//! verify each other; and a client certificate signed by that CA, which the nodes present to
//! each other (Redis requires one on the cluster bus whatever `tls-auth-clients` says, and a
//! certificate for servers only is refused there). Clients need no certificate
//! (`--tls-auth-clients no`).

use std::path::{Path, PathBuf};

/// The certificate files of a TLS topology.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The servers' certificate (PEM), for `127.0.0.1` and `localhost`.
    pub cert: PathBuf,
    /// Its private key (PEM).
    pub key: PathBuf,
    /// The CA certificate (PEM) that signed it.
    pub ca: PathBuf,
    /// A client certificate (PEM) signed by that CA, which the nodes present to each other.
    pub client_cert: PathBuf,
    /// Its private key (PEM).
    pub client_key: PathBuf,
}

impl TlsFiles {
    /// `server.pem`, `server.key`, `ca.pem`, `client.pem` and `client.key` in `dir`.
    pub fn in_dir(dir: &Path) -> Self {
        Self {
            cert: dir.join("server.pem"),
            key: dir.join("server.key"),
            ca: dir.join("ca.pem"),
            client_cert: dir.join("client.pem"),
            client_key: dir.join("client.key"),
        }
    }

    /// The `redis-server` arguments of a node whose TLS port is `tls_port`; `cluster` adds the
    /// cluster bus over TLS. The same settings serve a sentinel (its connections to the servers
    /// and to the other sentinels go over TLS with `tls-replication`).
    pub(crate) fn server_args(&self, tls_port: u16, cluster: bool) -> Vec<String> {
        let mut args: Vec<String> = vec![
            "--tls-port".into(),
            tls_port.to_string(),
            "--tls-cert-file".into(),
            self.cert.display().to_string(),
            "--tls-key-file".into(),
            self.key.display().to_string(),
            "--tls-ca-cert-file".into(),
            self.ca.display().to_string(),
            "--tls-client-cert-file".into(),
            self.client_cert.display().to_string(),
            "--tls-client-key-file".into(),
            self.client_key.display().to_string(),
            "--tls-auth-clients".into(),
            "no".into(),
            "--tls-replication".into(),
            "yes".into(),
        ];
        if cluster {
            args.extend(["--tls-cluster".into(), "yes".into()]);
        }
        args
    }
}

/// The TLS port of each plain port of a topology (none without TLS: every port is its own).
#[derive(Debug, Clone, Default)]
pub(crate) struct TlsPorts {
    files: Option<TlsFiles>,
    /// (plain, TLS) pairs.
    pairs: Vec<(u16, u16)>,
}

impl TlsPorts {
    /// The ports `ports` needs: `plain` alone, or with TLS as many again.
    pub(crate) fn needed(files: Option<&TlsFiles>, plain: usize) -> usize {
        if files.is_some() { 2 * plain } else { plain }
    }

    /// Pairs each of `plain` with one of `tls` (allocated with them, so that none is handed out
    /// twice), when `files` is set.
    pub(crate) fn new(files: Option<&TlsFiles>, plain: &[u16], tls: &[u16]) -> Self {
        let Some(files) = files else {
            return Self::default();
        };
        Self {
            files: Some(files.clone()),
            pairs: plain.iter().copied().zip(tls.iter().copied()).collect(),
        }
    }

    /// Whether the topology has TLS ports.
    pub(crate) fn enabled(&self) -> bool {
        self.files.is_some()
    }

    /// The TLS port of the node on plain port `port` (`port` itself without TLS).
    pub(crate) fn tls(&self, port: u16) -> u16 {
        self.pairs
            .iter()
            .find(|(plain, _)| *plain == port)
            .map_or(port, |(_, tls)| *tls)
    }

    /// The plain port of the node a server reported as `port` (a TLS port, or already plain).
    pub(crate) fn plain(&self, port: u16) -> u16 {
        self.pairs
            .iter()
            .find(|(_, tls)| *tls == port)
            .map_or(port, |(plain, _)| *plain)
    }

    /// `127.0.0.1:<tls>,...`: the TLS ports of `ports`, for a URL.
    ///
    /// # Panics
    ///
    /// Without TLS: a topology started without [`TlsFiles`] has no TLS URL.
    pub(crate) fn seeds(&self, ports: &[u16]) -> String {
        assert!(self.enabled(), "this topology was started without TLS");
        let seeds: Vec<String> = ports
            .iter()
            .map(|port| format!("127.0.0.1:{}", self.tls(*port)))
            .collect();
        seeds.join(",")
    }

    /// The TLS arguments of the node on plain port `port` (none without TLS).
    pub(crate) fn args(&self, port: u16, cluster: bool) -> Vec<String> {
        match &self.files {
            Some(files) => files.server_args(self.tls(port), cluster),
            None => Vec::new(),
        }
    }
}
