//! `--web.config.file`: TLS and basic authentication in the format of
//! Prometheus's exporter-toolkit web config:
//!
//! ```yaml
//! tls_server_config:
//!   cert_file: server.crt         # paths relative to this file
//!   key_file: server.key
//!   client_auth_type: RequireAndVerifyClientCert
//!   client_ca_file: ca.crt
//!   min_version: TLS12
//! basic_auth_users:
//!   alice: $2y$10$...             # bcrypt hash
//! ```
//!
//! As in Prometheus, the file is read again for every request (basic auth)
//! and every TLS handshake (certificates), so rotated certificates and
//! changed users apply without a restart; whether the listener speaks TLS
//! at all is decided at start-up. Bad or missing credentials get a bare
//! 401 with `WWW-Authenticate: Basic`, and nothing says which part was
//! wrong; an unknown user costs a bcrypt comparison too.
//!
//! Rustls has no TLS 1.0/1.1 and no "accept any client certificate without
//! verifying it", so `min_version: TLS10|TLS11` and `client_auth_type:
//! RequestClientCert|RequireAnyClientCert` are refused with a message.
//! `cipher_suites`, `curve_preferences`, `prefer_server_cipher_suites`
//! and `http_server_config` are accepted and rustls's defaults apply.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::limits::{GuardedStream, LimitedListener};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use parking_lot::Mutex;
use serde::Deserialize;
use tokio::sync::mpsc;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebConfig {
    #[serde(default)]
    pub tls_server_config: Option<TlsServerConfig>,
    #[serde(default)]
    pub http_server_config: Option<serde_yaml::Value>,
    #[serde(default)]
    pub basic_auth_users: BTreeMap<String, String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsServerConfig {
    #[serde(default)]
    pub cert_file: String,
    #[serde(default)]
    pub key_file: String,
    #[serde(default)]
    pub client_auth_type: String,
    #[serde(default)]
    pub client_ca_file: String,
    #[serde(default)]
    pub min_version: String,
    #[serde(default)]
    pub max_version: String,
    #[serde(default)]
    pub cipher_suites: Vec<String>,
    #[serde(default)]
    pub curve_preferences: Vec<String>,
    #[serde(default)]
    pub prefer_server_cipher_suites: Option<bool>,
    #[serde(default)]
    pub client_allowed_sans: Vec<String>,
}

impl WebConfig {
    /// Reads and checks the file; TLS settings are checked by building them.
    pub fn load(path: &Path) -> Result<WebConfig, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let mut config: WebConfig = if text.trim().is_empty() {
            WebConfig::default()
        } else {
            serde_yaml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?
        };
        let dir = path.parent().unwrap_or(Path::new("."));
        if let Some(tls) = &mut config.tls_server_config {
            for file in [
                &mut tls.cert_file,
                &mut tls.key_file,
                &mut tls.client_ca_file,
            ] {
                if !file.is_empty() && Path::new(file.as_str()).is_relative() {
                    *file = dir.join(&*file).display().to_string();
                }
            }
        }
        for (user, hash) in &config.basic_auth_users {
            if hash.parse::<bcrypt::HashParts>().is_err() {
                return Err(format!("basic_auth_users: {user}: not a bcrypt hash"));
            }
        }
        if config.tls_enabled() {
            config.server_config()?;
        }
        Ok(config)
    }

    pub fn tls_enabled(&self) -> bool {
        self.tls_server_config
            .as_ref()
            .is_some_and(|t| !t.cert_file.is_empty() || !t.key_file.is_empty())
    }

    /// The rustls configuration for a handshake.
    pub fn server_config(&self) -> Result<Arc<rustls::ServerConfig>, String> {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let Some(tls) = &self.tls_server_config else {
            return Err("no tls_server_config".into());
        };
        if tls.cert_file.is_empty() {
            return Err("missing cert_file".into());
        }
        if tls.key_file.is_empty() {
            return Err("missing key_file".into());
        }
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&tls.cert_file)
            .and_then(|it| it.collect::<Result<_, _>>())
            .map_err(|e| format!("cert_file {}: {e}", tls.cert_file))?;
        if certs.is_empty() {
            return Err(format!("cert_file {}: no certificate", tls.cert_file));
        }
        let key = PrivateKeyDer::from_pem_file(&tls.key_file)
            .map_err(|e| format!("key_file {}: {e}", tls.key_file))?;
        let versions: &[&rustls::SupportedProtocolVersion] =
            match (tls.min_version.as_str(), tls.max_version.as_str()) {
                ("" | "TLS12", "" | "TLS13") => &[&rustls::version::TLS13, &rustls::version::TLS12],
                ("TLS13", "" | "TLS13") => &[&rustls::version::TLS13],
                ("" | "TLS12", "TLS12") => &[&rustls::version::TLS12],
                (min @ ("TLS10" | "TLS11"), _) => {
                    return Err(format!(
                        "min_version {min} is not supported by Ember (TLS 1.2 and 1.3 only)"
                    ));
                }
                (min, max) => {
                    return Err(format!(
                        "unsupported TLS versions min_version={min:?} max_version={max:?}"
                    ));
                }
            };
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(versions)
            .map_err(|e| format!("TLS versions: {e}"))?;
        let load_roots = || -> Result<rustls::RootCertStore, String> {
            if tls.client_ca_file.is_empty() {
                return Err(format!(
                    "client_auth_type {} needs client_ca_file",
                    tls.client_auth_type
                ));
            }
            let mut roots = rustls::RootCertStore::empty();
            for cert in CertificateDer::pem_file_iter(&tls.client_ca_file)
                .map_err(|e| format!("client_ca_file {}: {e}", tls.client_ca_file))?
            {
                let cert =
                    cert.map_err(|e| format!("client_ca_file {}: {e}", tls.client_ca_file))?;
                roots
                    .add(cert)
                    .map_err(|e| format!("client_ca_file {}: {e}", tls.client_ca_file))?;
            }
            Ok(roots)
        };
        let verifier = |optional: bool| -> Result<_, String> {
            let v = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(load_roots()?),
                provider.clone(),
            );
            let v = if optional {
                v.allow_unauthenticated()
            } else {
                v
            };
            v.build().map_err(|e| format!("client_ca_file: {e}"))
        };
        let builder = match tls.client_auth_type.as_str() {
            "" | "NoClientCert" => builder.with_no_client_auth(),
            "RequireAndVerifyClientCert" => builder.with_client_cert_verifier(verifier(false)?),
            "VerifyClientCertIfGiven" => builder.with_client_cert_verifier(verifier(true)?),
            other @ ("RequestClientCert" | "RequireAnyClientCert") => {
                return Err(format!(
                    "client_auth_type {other} is not supported by Ember (it does not accept unverified client certificates)"
                ));
            }
            other => return Err(format!("invalid ClientAuth {other:?}")),
        };
        let mut config = builder
            .with_single_cert(certs, key)
            .map_err(|e| format!("certificate and key: {e}"))?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}

/// The web config file, shared by the listeners' auth layer and TLS acceptor.
pub struct WebSecurity {
    path: PathBuf,
    /// Verified `user:hash:password` triples, so a client sending the same
    /// credentials does not pay a bcrypt comparison on every request.
    cache: Mutex<HashMap<String, bool>>,
}

/// Compared against when the user is unknown, so the answer takes as long.
const DUMMY_HASH: &str = "$2y$10$QOauhQNbBCuQDKes6eFzPeMqBSjb7Mr5DUmpZ/VcEd00UAV/LDeSi";

impl WebSecurity {
    pub fn new(path: PathBuf) -> Arc<WebSecurity> {
        Arc::new(WebSecurity {
            path,
            cache: Mutex::new(HashMap::new()),
        })
    }

    pub fn load(&self) -> Result<WebConfig, String> {
        WebConfig::load(&self.path)
    }

    async fn check(self: &Arc<Self>, users: &BTreeMap<String, String>, auth: Option<&str>) -> bool {
        let Some((user, pass)) = auth.and_then(parse_basic) else {
            return false;
        };
        self.verify(users, user, pass).await
    }

    /// Whether `pass` is `user`'s password in `basic_auth_users` (bcrypt,
    /// results cached); also used by the PostgreSQL listener.
    pub async fn verify(
        self: &Arc<Self>,
        users: &BTreeMap<String, String>,
        user: String,
        pass: String,
    ) -> bool {
        let (hash, known) = match users.get(&user) {
            Some(h) => (h.clone(), true),
            None => (DUMMY_HASH.to_owned(), false),
        };
        let key = format!("{user}:{hash}:{pass}");
        if let Some(ok) = self.cache.lock().get(&key) {
            return *ok && known;
        }
        let verified =
            tokio::task::spawn_blocking(move || bcrypt::verify(pass, &hash).unwrap_or(false))
                .await
                .unwrap_or(false);
        let mut cache = self.cache.lock();
        if cache.len() > 1000 {
            cache.clear();
        }
        cache.insert(key, verified);
        verified && known
    }
}

fn parse_basic(value: &str) -> Option<(String, String)> {
    use base64::Engine as _;
    let (scheme, rest) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(rest.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (u, p) = text.split_once(':')?;
    Some((u.to_owned(), p.to_owned()))
}

/// Basic authentication on every request when `basic_auth_users` is set.
pub async fn auth_layer(State(sec): State<Arc<WebSecurity>>, req: Request, next: Next) -> Response {
    let config = match sec.load() {
        Ok(c) => c,
        Err(err) => {
            tracing::error!(err = %err, "Unable to parse web configuration");
            return (StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error").into_response();
        }
    };
    if config.basic_auth_users.is_empty() {
        return next.run(req).await;
    }
    let auth = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if sec.check(&config.basic_auth_users, auth).await {
        return next.run(req).await;
    }
    let mut resp = (StatusCode::UNAUTHORIZED, "Unauthorized\n").into_response();
    resp.headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic"));
    resp
}

/// Longest a client gets to finish the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A listener that hands axum TLS streams. Handshakes run on their own
/// tasks, so a slow client does not hold up others, and each one reads the
/// web config file again (rotated certificates apply at once).
pub struct TlsListener {
    rx: mpsc::Receiver<(tokio_rustls::server::TlsStream<GuardedStream>, SocketAddr)>,
    local: SocketAddr,
}

impl TlsListener {
    pub fn new(
        mut listener: LimitedListener,
        sec: Arc<WebSecurity>,
    ) -> std::io::Result<TlsListener> {
        let local = axum::serve::Listener::local_addr(&listener)?;
        let (tx, rx) = mpsc::channel(64);
        tokio::spawn(async move {
            loop {
                let (stream, addr) = listener.accept_guarded().await;
                if tx.is_closed() {
                    return;
                }
                let tx = tx.clone();
                let sec = sec.clone();
                tokio::spawn(async move {
                    let config = match sec.load().and_then(|c| c.server_config()) {
                        Ok(c) => c,
                        Err(err) => {
                            tracing::error!(err = %err, "Cannot load TLS configuration; connection closed");
                            return;
                        }
                    };
                    let acceptor = tokio_rustls::TlsAcceptor::from(config);
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => {
                            let _ = tx.send((tls, addr)).await;
                        }
                        Ok(Err(err)) => {
                            tracing::debug!(remote = %addr, err = %err, "TLS handshake failed")
                        }
                        Err(_) => tracing::debug!(remote = %addr, "TLS handshake timed out"),
                    }
                });
            }
        });
        Ok(TlsListener { rx, local })
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<GuardedStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.rx.recv().await {
            Some(conn) => conn,
            // The acceptor task only ends with the runtime.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_header() {
        assert_eq!(
            parse_basic("Basic YWxpY2U6czNjcjN0"),
            Some(("alice".into(), "s3cr3t".into()))
        );
        assert_eq!(parse_basic("Bearer x"), None);
        assert_eq!(parse_basic("Basic !!!"), None);
    }

    #[test]
    fn dummy_hash_is_valid() {
        assert!(DUMMY_HASH.parse::<bcrypt::HashParts>().is_ok());
    }

    #[test]
    fn config_checks() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("web.yml");
        std::fs::write(&p, "basic_auth_users:\n  a: nothash\n").unwrap();
        assert!(
            WebConfig::load(&p)
                .unwrap_err()
                .contains("not a bcrypt hash")
        );
        std::fs::write(&p, "tls_server_config:\n  cert_file: x.crt\n").unwrap();
        assert!(
            WebConfig::load(&p)
                .unwrap_err()
                .contains("missing key_file")
        );
        std::fs::write(&p, "bogus: 1\n").unwrap();
        assert!(WebConfig::load(&p).unwrap_err().contains("unknown field"));
        std::fs::write(&p, "").unwrap();
        assert!(!WebConfig::load(&p).unwrap().tls_enabled());
    }
}
