//! TLS files for `rediss://` connections: the CA bundle that verifies the Redis servers
//! (`redis.ca_file`) and the client certificate and key that Redis mutual TLS
//! (`tls-auth-clients yes`) asks for (`redis.client_cert_file`, `redis.client_key_file`).
//!
//! Why the files are read and checked here, at start-up: redis-rs parses them only when a
//! connection opens, so a missing file, a garbled PEM or a key that does not match its
//! certificate would otherwise show as nothing more than "redis instance DOWN" on every
//! health check, long after the deploy. Checking them while the configuration loads stops the
//! process with the key named. The same rustls parsers redis-rs uses do the checking, so a file
//! accepted here is accepted when connecting.
//!
//! Secrets: the key's bytes go only to redis-rs (whose `TlsCertificates` never prints them).
//! Errors about the key file name the key and the path, never its contents (the PEM parser's
//! own messages may quote a line of the file, so they are not passed on for it).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use redis::{ClientTlsConfig, TlsCertificates};
use rustls::RootCertStore;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;

use super::options::{RedisOptions, RedisUrl};

pub const CA_FILE: &str = "redis.ca_file";
pub const CLIENT_CERT_FILE: &str = "redis.client_cert_file";
pub const CLIENT_KEY_FILE: &str = "redis.client_key_file";

/// Why the TLS files cannot be used. Each names the configuration key at fault.
#[derive(Debug, thiserror::Error)]
pub enum TlsFileError {
    /// A configured file cannot be read (missing, unreadable).
    #[error("{key}: cannot read {}: {source}", path.display())]
    Read {
        /// The configuration key that names the file (`redis.ca_file`, ...).
        key: &'static str,
        /// The file's path as configured.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A file was read but cannot be used: not PEM, no certificate or key in it, or a key that
    /// does not match its certificate.
    #[error("{key}: {}: {reason}", path.display())]
    Invalid {
        /// The configuration key that names the file.
        key: &'static str,
        /// The file's path as configured.
        path: PathBuf,
        /// What is wrong; for the key file, never a quote of its contents.
        reason: String,
    },
    /// Only one of the client certificate and key is configured: the first field is the key
    /// that is set, the second the one that is not.
    #[error("{CLIENT_CERT_FILE} and {CLIENT_KEY_FILE} go together: {0} is set, {1} is not")]
    Unpaired(&'static str, &'static str),
    /// A TLS file is configured (the field names its key) but no Redis URL is `rediss://`, so it
    /// would never be used.
    #[error(
        "{0} is set but neither redis.primary_url nor redis.fallback_url is a rediss:// URL \
         (the TLS files apply to rediss:// only)"
    )]
    NoTlsUrl(&'static str),
}

/// The certificates for redis-rs, read and checked; `None` when no TLS file is configured
/// (rediss:// then verifies against the system roots, or `SSL_CERT_FILE`).
pub fn load(options: &RedisOptions) -> Result<Option<TlsCertificates>, TlsFileError> {
    let ca = options.ca_file.as_deref();
    let client = match (
        options.client_cert_file.as_deref(),
        options.client_key_file.as_deref(),
    ) {
        (None, None) => None,
        (Some(cert), Some(key)) => Some((cert, key)),
        (Some(_), None) => return Err(TlsFileError::Unpaired(CLIENT_CERT_FILE, CLIENT_KEY_FILE)),
        (None, Some(_)) => return Err(TlsFileError::Unpaired(CLIENT_KEY_FILE, CLIENT_CERT_FILE)),
    };
    if ca.is_none() && client.is_none() {
        return Ok(None);
    }
    let any_tls = [&options.primary_url, &options.fallback_url]
        .into_iter()
        .flatten()
        .any(|url| url.is_tls());
    if !any_tls {
        let key = if ca.is_some() {
            CA_FILE
        } else {
            CLIENT_CERT_FILE
        };
        return Err(TlsFileError::NoTlsUrl(key));
    }
    let root_cert = ca.map(read_ca).transpose()?;
    let client_tls = client
        .map(|(cert, key)| read_client(cert, key))
        .transpose()?;
    Ok(Some(TlsCertificates {
        client_tls,
        root_cert,
    }))
}

fn read(key: &'static str, path: &Path) -> Result<Vec<u8>, TlsFileError> {
    std::fs::read(path).map_err(|source| TlsFileError::Read {
        key,
        path: path.to_owned(),
        source,
    })
}

fn invalid(key: &'static str, path: &Path, reason: impl Into<String>) -> TlsFileError {
    TlsFileError::Invalid {
        key,
        path: path.to_owned(),
        reason: reason.into(),
    }
}

/// The certificates of a PEM file (at least one).
fn certificates(
    key: &'static str,
    path: &Path,
    bytes: &[u8],
) -> Result<Vec<CertificateDer<'static>>, TlsFileError> {
    let certs = CertificateDer::pem_slice_iter(bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(key, path, format!("not a PEM certificate file: {e}")))?;
    if certs.is_empty() {
        return Err(invalid(key, path, "holds no PEM certificate"));
    }
    Ok(certs)
}

/// A CA bundle: PEM certificates that rustls accepts as trust anchors.
fn read_ca(path: &Path) -> Result<Vec<u8>, TlsFileError> {
    let bytes = read(CA_FILE, path)?;
    let mut store = RootCertStore::empty();
    for (i, cert) in certificates(CA_FILE, path, &bytes)?.into_iter().enumerate() {
        store.add(cert).map_err(|e| {
            invalid(
                CA_FILE,
                path,
                format!("certificate {} is not a usable CA certificate: {e}", i + 1),
            )
        })?;
    }
    Ok(bytes)
}

/// A client certificate chain and its private key, checked to belong together.
fn read_client(cert_path: &Path, key_path: &Path) -> Result<ClientTlsConfig, TlsFileError> {
    let client_cert = read(CLIENT_CERT_FILE, cert_path)?;
    let chain = certificates(CLIENT_CERT_FILE, cert_path, &client_cert)?;
    let client_key = read(CLIENT_KEY_FILE, key_path)?;
    let key = PrivateKeyDer::from_pem_slice(&client_key).map_err(|e| {
        // The parser's message may quote the file: say only which kind of fault it was.
        let reason = match e {
            pem::Error::NoItemsFound => {
                "holds no PEM private key (PKCS#8, PKCS#1 or SEC1)".to_owned()
            }
            pem::Error::Io(e) => format!("cannot be read: {}", e.kind()),
            _ => "is not a well-formed PEM private key".to_owned(),
        };
        invalid(CLIENT_KEY_FILE, key_path, reason)
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    CertifiedKey::from_der(chain, key, &provider).map_err(|e| match e {
        rustls::Error::InconsistentKeys(_) => invalid(
            CLIENT_KEY_FILE,
            key_path,
            format!(
                "is not the key of the certificate in {CLIENT_CERT_FILE} ({})",
                cert_path.display()
            ),
        ),
        other => invalid(
            CLIENT_KEY_FILE,
            key_path,
            format!("is not a usable private key: {other}"),
        ),
    })?;
    Ok(ClientTlsConfig {
        client_cert,
        client_key,
    })
}

/// Why a connection over TLS could fail on its first command, when it did by being dropped.
///
/// A Redis with `tls-auth-clients yes` refuses a missing or unknown client certificate only
/// after the TLS 1.3 handshake has completed on the client's side: it sends an alert and closes.
/// Whether the client then reads the alert (`received fatal alert: CertificateRequired`) or only
/// finds the connection reset (`broken pipe`) is a matter of timing, so the second case gets
/// this explanation rather than staying a bare "broken pipe".
pub(super) fn closed_after_handshake(
    error: &redis::RedisError,
    url: &RedisUrl,
    client_certificate: bool,
) -> Option<&'static str> {
    if !url.is_tls() || !error.is_connection_dropped() {
        return None;
    }
    Some(if client_certificate {
        " (the server closed the TLS connection after the handshake: does it accept the \
         certificate of redis.client_cert_file? A Redis with tls-auth-clients closes on one \
         that its tls-ca-cert-file did not sign)"
    } else {
        " (the server closed the TLS connection after the handshake: if it requires client \
         certificates (tls-auth-clients), set redis.client_cert_file and redis.client_key_file)"
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(url: &str) -> RedisOptions {
        RedisOptions {
            primary_url: Some(RedisUrl::parse(url).unwrap()),
            ..RedisOptions::default()
        }
    }

    fn error(options: &RedisOptions) -> String {
        load(options).unwrap_err().to_string()
    }

    #[test]
    fn nothing_configured_reads_nothing() {
        assert!(load(&options("rediss://h:6380")).unwrap().is_none());
    }

    #[test]
    fn client_certificate_and_key_go_together() {
        let mut o = options("rediss://h:6380");
        o.client_cert_file = Some("/nonexistent/cert.pem".into());
        let e = error(&o);
        assert!(e.contains("redis.client_cert_file is set"), "{e}");
        o.client_cert_file = None;
        o.client_key_file = Some("/nonexistent/key.pem".into());
        let e = error(&o);
        assert!(e.contains("redis.client_key_file is set"), "{e}");
    }

    #[test]
    fn tls_files_without_a_rediss_url_are_refused() {
        let mut o = options("redis://h:6379");
        o.ca_file = Some("/nonexistent/ca.pem".into());
        let e = error(&o);
        assert!(e.starts_with("redis.ca_file is set"), "{e}");
        assert!(e.contains("rediss://"), "{e}");
    }

    #[test]
    fn unreadable_and_unparsable_files_name_the_key_and_the_path() {
        let dir = std::env::temp_dir().join(format!("tb-redis-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let garbage = dir.join("garbage.pem");
        std::fs::write(&garbage, "not a certificate\n").unwrap();
        let mut o = options("rediss://h:6380");
        o.ca_file = Some(dir.join("missing.pem"));
        let e = error(&o);
        assert!(e.starts_with("redis.ca_file: cannot read "), "{e}");
        assert!(e.contains("missing.pem"), "{e}");
        o.ca_file = Some(garbage.clone());
        let e = error(&o);
        assert!(e.starts_with("redis.ca_file: "), "{e}");
        assert!(e.contains("holds no PEM certificate"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A key file that is not a key: the error names the key and the path and quotes nothing
    /// of the file, whatever the parser found wrong with it.
    #[test]
    fn key_file_contents_never_appear_in_errors() {
        let dir = std::env::temp_dir().join(format!("tb-redis-key-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let cert = dir.join("cert.pem");
        // A syntactically valid PEM certificate block (its contents are not parsed here).
        std::fs::write(
            &cert,
            "-----BEGIN CERTIFICATE-----\nMAA=\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let cases = [
            "SECRET-no-pem-at-all\n",
            "-----BEGIN PRIVATE KEY-----\nSECRET!!notbase64\n-----END PRIVATE KEY-----\n",
            "-----BEGIN PRIVATE KEY-----\nU0VDUkVU\n",
            "-----BEGIN SECRET\n",
        ];
        for (i, contents) in cases.iter().enumerate() {
            let key = dir.join(format!("key{i}.pem"));
            std::fs::write(&key, contents).unwrap();
            let mut o = options("rediss://h:6380");
            o.client_cert_file = Some(cert.clone());
            o.client_key_file = Some(key);
            let e = error(&o);
            assert!(e.starts_with("redis.client_key_file: "), "{e}");
            assert!(!e.contains("SECRET") && !e.contains("U0VDUkVU"), "{e}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_tls_connection_dropped_at_once_is_explained() {
        let dropped = redis::RedisError::from(std::io::Error::from(std::io::ErrorKind::BrokenPipe));
        let tls = RedisUrl::parse("rediss://h:6380").unwrap();
        let plain = RedisUrl::parse("redis://h:6379").unwrap();
        let without = closed_after_handshake(&dropped, &tls, false).unwrap();
        assert!(without.contains("set redis.client_cert_file"), "{without}");
        let with = closed_after_handshake(&dropped, &tls, true).unwrap();
        assert!(with.contains("does it accept"), "{with}");
        assert_eq!(closed_after_handshake(&dropped, &plain, false), None);
        let refused =
            redis::RedisError::from(std::io::Error::from(std::io::ErrorKind::InvalidData));
        assert_eq!(closed_after_handshake(&refused, &tls, false), None);
    }
}
