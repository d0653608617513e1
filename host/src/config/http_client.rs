//! HTTP client settings shared by scrape configs, Alertmanager configs and
//! remote read/write: authentication, TLS, proxy, redirects.
//!
//! Prometheus writes these keys inline in each section; serde cannot combine
//! `flatten` with `deny_unknown_fields`, so [`with_http_client_fields!`] adds
//! the raw keys to each section's struct and [`RawHttpClient::validate`]
//! turns them into one checked [`HttpClientConfig`].

use serde::{Deserialize, Serialize, Serializer};

use super::labels::nullable;

/// A credential that must never be echoed back (status pages, logs).
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<secret>")
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("<secret>")
    }
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BasicAuth {
    #[serde(default)]
    pub username: String,
    #[serde(default, skip_serializing_if = "Secret::is_empty")]
    pub password: Secret,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub password_file: String,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Authorization {
    #[serde(default, rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Secret::is_empty")]
    pub credentials: Secret,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub credentials_file: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
pub enum TlsVersion {
    TLS10,
    TLS11,
    TLS12,
    TLS13,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub ca: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub ca_file: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub cert: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub cert_file: String,
    #[serde(default, skip_serializing_if = "Secret::is_empty")]
    pub key: Secret,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub key_file: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub server_name: String,
    #[serde(default, deserialize_with = "super::yaml::bool")]
    pub insecure_skip_verify: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_version: Option<TlsVersion>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_version: Option<TlsVersion>,
}

impl TlsConfig {
    fn validate(&self) -> Result<(), String> {
        // A deliberate difference: Prometheus would accept this and fail every
        // handshake. rustls implements TLS 1.2 and 1.3 only. (A min_version
        // below TLS12 is accepted and means TLS 1.2.)
        if let Some(v @ (TlsVersion::TLS10 | TlsVersion::TLS11)) = self.max_version {
            return Err(format!(
                "tls_config max_version {v:?} is not supported: Ember speaks TLS 1.2 and 1.3 only (rustls)"
            ));
        }
        if !self.ca.is_empty() && !self.ca_file.is_empty() {
            return Err("at most one of ca and ca_file must be configured".into());
        }
        if !self.cert.is_empty() && !self.cert_file.is_empty() {
            return Err("at most one of cert and cert_file must be configured".into());
        }
        if !self.key.is_empty() && !self.key_file.is_empty() {
            return Err("at most one of key and key_file must be configured".into());
        }
        let has_cert = !self.cert.is_empty() || !self.cert_file.is_empty();
        let has_key = !self.key.is_empty() || !self.key_file.is_empty();
        if has_cert && !has_key {
            return Err(
                "exactly one of key or key_file must be configured when a client certificate is configured"
                    .into(),
            );
        }
        if has_key && !has_cert {
            return Err(
                "exactly one of cert or cert_file must be configured when a client key is configured"
                    .into(),
            );
        }
        Ok(())
    }

    /// Files this TLS config reads, for `ember check config`.
    pub fn files(&self) -> impl Iterator<Item = (&'static str, &str)> {
        [
            ("ca_file", self.ca_file.as_str()),
            ("cert_file", self.cert_file.as_str()),
            ("key_file", self.key_file.as_str()),
        ]
        .into_iter()
        .filter(|(_, f)| !f.is_empty())
    }
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OAuth2 {
    #[serde(default)]
    pub client_id: String,
    #[serde(default, skip_serializing_if = "Secret::is_empty")]
    pub client_secret: Secret,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub client_secret_file: String,
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub scopes: Vec<String>,
    #[serde(default)]
    pub token_url: String,
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "std::collections::BTreeMap::is_empty"
    )]
    pub endpoint_params: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    pub tls_config: TlsConfig,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub proxy_url: String,
}

/// The validated HTTP client settings of one section.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct HttpClientConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub basic_auth: Option<BasicAuth>,
    /// `bearer_token`/`bearer_token_file` are folded in here, as Prometheus does.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub authorization: Option<Authorization>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oauth2: Option<OAuth2>,
    pub tls_config: TlsConfig,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub proxy_url: String,
    pub follow_redirects: bool,
    pub enable_http2: bool,
}

impl Default for HttpClientConfig {
    fn default() -> Self {
        HttpClientConfig {
            basic_auth: None,
            authorization: None,
            oauth2: None,
            tls_config: TlsConfig::default(),
            proxy_url: String::new(),
            follow_redirects: true,
            enable_http2: true,
        }
    }
}

impl HttpClientConfig {
    /// Files these settings read, named by their key, for `ember check config`.
    pub fn files(&self) -> Vec<(&'static str, &str)> {
        let mut out: Vec<(&'static str, &str)> = self.tls_config.files().collect();
        if let Some(b) = &self.basic_auth
            && !b.password_file.is_empty()
        {
            out.push(("password_file", &b.password_file));
        }
        if let Some(a) = &self.authorization
            && !a.credentials_file.is_empty()
        {
            out.push(("credentials_file", &a.credentials_file));
        }
        if let Some(o) = &self.oauth2 {
            if !o.client_secret_file.is_empty() {
                out.push(("client_secret_file", &o.client_secret_file));
            }
            out.extend(o.tls_config.files());
        }
        out
    }
}

/// The raw inline keys, gathered from a section struct by the macro.
pub struct RawHttpClient {
    pub basic_auth: Option<BasicAuth>,
    pub authorization: Option<Authorization>,
    pub oauth2: Option<OAuth2>,
    pub bearer_token: Option<Secret>,
    pub bearer_token_file: Option<String>,
    pub tls_config: Option<TlsConfig>,
    pub proxy_url: Option<String>,
    pub follow_redirects: Option<bool>,
    pub enable_http2: Option<bool>,
}

impl RawHttpClient {
    pub fn validate(self) -> Result<HttpClientConfig, String> {
        let bearer = self.bearer_token.filter(|t| !t.is_empty());
        let bearer_file = self.bearer_token_file.filter(|f| !f.is_empty());
        if bearer.is_some() && bearer_file.is_some() {
            return Err(
                "at most one of bearer_token & bearer_token_file must be configured".into(),
            );
        }
        let has_bearer = bearer.is_some() || bearer_file.is_some();
        if self.basic_auth.is_some() && has_bearer {
            return Err(
                "at most one of basic_auth, bearer_token & bearer_token_file must be configured"
                    .into(),
            );
        }
        if let Some(b) = &self.basic_auth
            && !b.password.is_empty()
            && !b.password_file.is_empty()
        {
            return Err(
                "at most one of basic_auth password & password_file must be configured".into(),
            );
        }
        let mut authorization = self.authorization;
        if let Some(a) = &mut authorization {
            if has_bearer {
                return Err(
                    "authorization is not compatible with bearer_token & bearer_token_file".into(),
                );
            }
            if !a.credentials.is_empty() && !a.credentials_file.is_empty() {
                return Err(
                    "at most one of authorization credentials & credentials_file must be configured"
                        .into(),
                );
            }
            if a.kind.is_empty() {
                a.kind = "Bearer".into();
            }
            if a.kind.eq_ignore_ascii_case("basic") {
                return Err(
                    r#"authorization type cannot be set to "basic", use "basic_auth" instead"#
                        .into(),
                );
            }
        }
        if self.basic_auth.is_some() && authorization.is_some() {
            return Err("at most one of basic_auth & authorization must be configured".into());
        }
        if let Some(o) = &self.oauth2 {
            if self.basic_auth.is_some() || authorization.is_some() || has_bearer {
                return Err(
                    "at most one of basic_auth, oauth2 & authorization must be configured".into(),
                );
            }
            if o.client_id.is_empty() {
                return Err("oauth2 client_id must be configured".into());
            }
            if !o.client_secret.is_empty() && !o.client_secret_file.is_empty() {
                return Err(
                    "at most one of oauth2 client_secret & client_secret_file must be configured"
                        .into(),
                );
            }
            if o.token_url.is_empty() {
                return Err("oauth2 token_url must be configured".into());
            }
            o.tls_config.validate()?;
        }
        if has_bearer {
            authorization = Some(Authorization {
                kind: "Bearer".into(),
                credentials: bearer.unwrap_or_default(),
                credentials_file: bearer_file.unwrap_or_default(),
            });
        }
        let tls_config = self.tls_config.unwrap_or_default();
        tls_config.validate()?;
        let proxy_url = self.proxy_url.unwrap_or_default();
        if !proxy_url.is_empty() {
            super::parse_url(&proxy_url).map_err(|e| format!("invalid proxy_url: {e}"))?;
        }
        Ok(HttpClientConfig {
            basic_auth: self.basic_auth,
            authorization,
            oauth2: self.oauth2,
            tls_config,
            proxy_url,
            follow_redirects: self.follow_redirects.unwrap_or(true),
            enable_http2: self.enable_http2.unwrap_or(true),
        })
    }
}

/// Declares a raw section struct with the inline HTTP client keys added, plus
/// a `take_http_client` method that moves them into a [`RawHttpClient`].
macro_rules! with_http_client_fields {
    ($(#[$meta:meta])* $vis:vis struct $name:ident { $($body:tt)* }) => {
        $(#[$meta])*
        $vis struct $name {
            $($body)*
            basic_auth: Option<$crate::config::http_client::BasicAuth>,
            authorization: Option<$crate::config::http_client::Authorization>,
            oauth2: Option<$crate::config::http_client::OAuth2>,
            bearer_token: Option<$crate::config::http_client::Secret>,
            bearer_token_file: Option<String>,
            tls_config: Option<$crate::config::http_client::TlsConfig>,
            proxy_url: Option<String>,
            #[serde(default, deserialize_with = "crate::config::yaml::opt_bool")]
            follow_redirects: Option<bool>,
            #[serde(default, deserialize_with = "crate::config::yaml::opt_bool")]
            enable_http2: Option<bool>,
        }

        impl $name {
            fn take_http_client(&mut self) -> $crate::config::http_client::RawHttpClient {
                $crate::config::http_client::RawHttpClient {
                    basic_auth: self.basic_auth.take(),
                    authorization: self.authorization.take(),
                    oauth2: self.oauth2.take(),
                    bearer_token: self.bearer_token.take(),
                    bearer_token_file: self.bearer_token_file.take(),
                    tls_config: self.tls_config.take(),
                    proxy_url: self.proxy_url.take(),
                    follow_redirects: self.follow_redirects.take(),
                    enable_http2: self.enable_http2.take(),
                }
            }
        }
    };
}
pub(crate) use with_http_client_fields;
