//! One remote's HTTP side: a client built from the `remote_write` section
//! (TLS, proxy, redirects, timeout), and a POST of one snappy-compressed
//! `WriteRequest` with the protocol's headers, auth and the user's headers.

use std::path::{Path, PathBuf};

use super::policy::{Outcome, classify_status};
use crate::config::remote::RemoteWriteConfig;
use crate::config::resolve_path;
use crate::scrape::tls::{TlsFiles, client_config};

/// Why a request did not succeed, and whether to try again.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("{0}")]
    Drop(String),
    #[error("{0}")]
    Retry(String),
}

pub struct RemoteClient {
    http: reqwest::Client,
    cfg: RemoteWriteConfig,
    config_dir: PathBuf,
}

impl RemoteClient {
    pub fn new(cfg: &RemoteWriteConfig, config_dir: &Path) -> Result<RemoteClient, String> {
        let http_cfg = &cfg.http_client;
        let files = TlsFiles::read(&http_cfg.tls_config, config_dir)?;
        let tls = client_config(&http_cfg.tls_config, &files)?;
        let mut b = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .timeout(cfg.remote_timeout.as_duration())
            .redirect(if http_cfg.follow_redirects {
                reqwest::redirect::Policy::limited(10)
            } else {
                reqwest::redirect::Policy::none()
            })
            .user_agent(concat!("Ember/", env!("CARGO_PKG_VERSION")));
        if http_cfg.proxy_url.is_empty() {
            b = b.no_proxy();
        } else {
            b = b.proxy(
                reqwest::Proxy::all(&http_cfg.proxy_url).map_err(|e| format!("proxy_url: {e}"))?,
            );
        }
        Ok(RemoteClient {
            http: b.build().map_err(|e| e.to_string())?,
            cfg: cfg.clone(),
            config_dir: config_dir.to_owned(),
        })
    }

    fn read_secret_file(&self, f: &str) -> Result<String, SendError> {
        std::fs::read_to_string(resolve_path(&self.config_dir, f))
            .map(|s| s.trim().to_owned())
            // A missing secret file may appear (secrets are often mounted late).
            .map_err(|e| SendError::Retry(format!("unable to read {f}: {e}")))
    }

    /// Sends one compressed request body.
    pub async fn send(&self, body: Vec<u8>) -> Result<(), SendError> {
        let mut req = self
            .http
            .post(&self.cfg.url)
            .header("Content-Encoding", "snappy")
            .header("Content-Type", "application/x-protobuf")
            .header("X-Prometheus-Remote-Write-Version", "0.1.0");
        for (k, v) in &self.cfg.headers {
            req = req.header(k, v);
        }
        let http = &self.cfg.http_client;
        if let Some(b) = &http.basic_auth {
            let password = if b.password_file.is_empty() {
                b.password.expose().to_owned()
            } else {
                self.read_secret_file(&b.password_file)?
            };
            req = req.basic_auth(&b.username, Some(password));
        }
        if let Some(a) = &http.authorization {
            let credentials = if a.credentials_file.is_empty() {
                a.credentials.expose().to_owned()
            } else {
                self.read_secret_file(&a.credentials_file)?
            };
            req = req.header("Authorization", format!("{} {credentials}", a.kind));
        }
        let resp = req
            .body(body)
            .send()
            .await
            .map_err(|e| SendError::Retry(format!("{e:#}")))?;
        let status = resp.status().as_u16();
        match classify_status(status, self.cfg.queue_config.retry_on_http_429) {
            Outcome::Sent => Ok(()),
            outcome => {
                // The remote's own explanation, bounded: it goes into logs.
                let text = resp.text().await.unwrap_or_default();
                let text: String = text.trim().chars().take(256).collect();
                let msg = format!("server returned HTTP status {status}: {text}");
                Err(if outcome == Outcome::Retry {
                    SendError::Retry(msg)
                } else {
                    SendError::Drop(msg)
                })
            }
        }
    }
}
