//! `tls_config` of a scrape job turned into a rustls client configuration.
//!
//! The crypto provider is `ring` (see the workspace Cargo.toml for why).
//! Like Go's `crypto/tls` as Prometheus configures it:
//!
//! - `ca`/`ca_file` replaces the trust roots; without it the system's trust
//!   store is used (through rustls-platform-verifier).
//! - `server_name` is the name the server certificate must be valid for,
//!   whatever host the target URL names.
//! - `insecure_skip_verify` accepts any certificate (the handshake signature
//!   is still checked, so the peer holds the certificate's key).
//! - `cert`/`cert_file` with `key`/`key_file` is the client certificate.
//! - `min_version`/`max_version` restrict the protocol versions. rustls has no
//!   TLS 1.0 or 1.1, so a `min_version` below TLS12 means TLS 1.2 (and the
//!   config loader rejects a `max_version` below TLS12).
//!
//! Files are read by [`TlsFiles::read`]; the scrape manager re-reads them on
//! every reconciliation and rebuilds the client when their contents change.

use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

use crate::config::http_client::{TlsConfig, TlsVersion};

/// The contents of the files a `tls_config` names, read at one moment.
/// Compared across reads to notice rotated certificates.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsFiles {
    ca: Option<Vec<u8>>,
    cert: Option<Vec<u8>>,
    key: Option<Vec<u8>>,
}

impl TlsFiles {
    /// Reads `ca_file`, `cert_file` and `key_file` (relative paths are
    /// relative to the configuration file's directory).
    pub fn read(tls: &TlsConfig, config_dir: &Path) -> Result<TlsFiles, String> {
        let read = |key: &str, file: &str| -> Result<Option<Vec<u8>>, String> {
            if file.is_empty() {
                return Ok(None);
            }
            let path = crate::config::resolve_path(config_dir, file);
            std::fs::read(&path)
                .map(Some)
                .map_err(|e| format!("unable to read {key} {}: {e}", path.display()))
        };
        Ok(TlsFiles {
            ca: read("CA file", &tls.ca_file)?,
            cert: read("client certificate file", &tls.cert_file)?,
            key: read("client key file", &tls.key_file)?,
        })
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn protocol_versions(
    tls: &TlsConfig,
) -> Result<Vec<&'static rustls::SupportedProtocolVersion>, String> {
    // rustls knows TLS 1.2 and 1.3 only; lower settings clamp to 1.2.
    let rank = |v: TlsVersion| match v {
        TlsVersion::TLS10 | TlsVersion::TLS11 | TlsVersion::TLS12 => 12,
        TlsVersion::TLS13 => 13,
    };
    let min = tls.min_version.map_or(12, rank);
    let max = tls.max_version.map_or(13, rank);
    if let (Some(lo), Some(hi)) = (tls.min_version, tls.max_version)
        && (lo as u8) > (hi as u8)
    {
        return Err(format!(
            "tls_config: max_version ({hi:?}) must be greater than or equal to min_version ({lo:?})"
        ));
    }
    let mut out = Vec::new();
    if min <= 13 && max >= 13 {
        out.push(&rustls::version::TLS13);
    }
    if min <= 12 && max >= 12 {
        out.push(&rustls::version::TLS12);
    }
    if out.is_empty() {
        return Err("tls_config: no TLS version left between min_version and max_version".into());
    }
    Ok(out)
}

fn certificates(pem: &[u8], what: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{what}: invalid PEM: {e}"))?;
    if certs.is_empty() {
        return Err(format!("{what}: no PEM certificate found"));
    }
    Ok(certs)
}

/// Builds the rustls client configuration for one scrape job.
pub fn client_config(tls: &TlsConfig, files: &TlsFiles) -> Result<rustls::ClientConfig, String> {
    let provider = provider();
    let algorithms = provider.signature_verification_algorithms;
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&protocol_versions(tls)?)
        .map_err(|e| format!("tls_config: {e}"))?;

    let verifier: Arc<dyn ServerCertVerifier> = if tls.insecure_skip_verify {
        Arc::new(SkipVerify { algorithms })
    } else {
        let ca = match &files.ca {
            Some(pem) => Some(pem.as_slice()),
            None if !tls.ca.is_empty() => Some(tls.ca.as_bytes()),
            None => None,
        };
        let inner: Arc<dyn ServerCertVerifier> = match ca {
            Some(pem) => {
                let mut roots = rustls::RootCertStore::empty();
                for cert in certificates(pem, "tls_config CA")? {
                    roots
                        .add(cert)
                        .map_err(|e| format!("tls_config CA: unusable certificate: {e}"))?;
                }
                rustls::client::WebPkiServerVerifier::builder_with_provider(
                    Arc::new(roots),
                    provider.clone(),
                )
                .build()
                .map_err(|e| format!("tls_config CA: {e}"))?
            }
            None => Arc::new(
                rustls_platform_verifier::Verifier::new(provider.clone())
                    .map_err(|e| format!("system trust store: {e}"))?,
            ),
        };
        if tls.server_name.is_empty() {
            inner
        } else {
            let name = ServerName::try_from(tls.server_name.clone()).map_err(|e| {
                format!("tls_config: invalid server_name {:?}: {e}", tls.server_name)
            })?;
            Arc::new(FixedServerName { inner, name })
        }
    };
    let builder = builder
        .dangerous()
        .with_custom_certificate_verifier(verifier);

    let cert_pem = files
        .cert
        .as_deref()
        .or((!tls.cert.is_empty()).then_some(tls.cert.as_bytes()));
    let key_pem = files
        .key
        .as_deref()
        .or((!tls.key.is_empty()).then_some(tls.key.expose().as_bytes()));
    let mut config = match (cert_pem, key_pem) {
        (Some(cert), Some(key)) => {
            let chain = certificates(cert, "tls_config client certificate")?;
            let key = PrivateKeyDer::from_pem_slice(key)
                .map_err(|e| format!("tls_config client key: {e}"))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| format!("tls_config client certificate and key: {e}"))?
        }
        _ => builder.with_no_client_auth(),
    };
    // The scrape client speaks HTTP/1.1 only.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// Verifies the server certificate against `server_name` from the config
/// instead of the target's host.
#[derive(Debug)]
struct FixedServerName {
    inner: Arc<dyn ServerCertVerifier>,
    name: ServerName<'static>,
}

impl ServerCertVerifier for FixedServerName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.inner
            .verify_server_cert(end_entity, intermediates, &self.name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// `insecure_skip_verify: true`: any certificate chain and name is accepted.
#[derive(Debug)]
struct SkipVerify {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for SkipVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tls(yaml: &str) -> TlsConfig {
        serde_yaml::from_str(yaml).expect("tls_config parses")
    }

    #[test]
    fn versions_clamp_to_what_rustls_has() {
        let all = protocol_versions(&tls("{}")).unwrap();
        assert_eq!(all.len(), 2);
        let only13 = protocol_versions(&tls("min_version: TLS13")).unwrap();
        assert_eq!(only13.len(), 1);
        assert_eq!(only13[0].version, rustls::ProtocolVersion::TLSv1_3);
        let only12 = protocol_versions(&tls("max_version: TLS12")).unwrap();
        assert_eq!(only12[0].version, rustls::ProtocolVersion::TLSv1_2);
        assert_eq!(
            protocol_versions(&tls("min_version: TLS10")).unwrap().len(),
            2
        );
        let err = protocol_versions(&tls("min_version: TLS13\nmax_version: TLS12")).unwrap_err();
        assert!(err.contains("max_version"), "{err}");
    }

    #[test]
    fn bad_pem_is_a_clear_error() {
        let files = TlsFiles {
            ca: Some(b"not a certificate".to_vec()),
            ..TlsFiles::default()
        };
        let err = client_config(&TlsConfig::default(), &files).unwrap_err();
        assert!(err.contains("no PEM certificate"), "{err}");
    }

    #[test]
    fn missing_file_names_the_path() {
        let cfg = tls("ca_file: does/not/exist.pem");
        let err = TlsFiles::read(&cfg, Path::new("/nonexistent-dir")).unwrap_err();
        assert!(
            err.contains("CA file /nonexistent-dir/does/not/exist.pem"),
            "{err}"
        );
    }

    #[test]
    fn defaults_use_the_system_store() {
        client_config(&TlsConfig::default(), &TlsFiles::default()).unwrap();
        client_config(&tls("insecure_skip_verify: true"), &TlsFiles::default()).unwrap();
        client_config(&tls("server_name: example.internal"), &TlsFiles::default()).unwrap();
    }
}
