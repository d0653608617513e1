//! What one plugin instance's store holds: WASI context, limits, and the host
//! imports (`host`, `http`) bound to the plugin's identity and grants.

use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::ResourceLimiter;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{ResourceTable, WasiCtx, WasiCtxView, WasiView};

use super::PluginSettings;
use super::bindings::{host, http, types};

/// Caps linear memory and tables; remembers whether a cap was hit so a trap
/// that follows can be reported as out-of-memory.
pub struct Limiter {
    pub max_memory: usize,
    pub memory: usize,
    pub exceeded: bool,
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let total = self.memory.saturating_sub(current).saturating_add(desired);
        if total > self.max_memory {
            self.exceeded = true;
            return Ok(false);
        }
        self.memory = total;
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }
}

pub struct State {
    pub wasi: WasiCtx,
    pub table: ResourceTable,
    pub limiter: Limiter,
    pub settings: Arc<PluginSettings>,
    pub http: reqwest::Client,
    pub stderr: MemoryOutputPipe,
    /// When the current call must be over.
    pub deadline: Instant,
    /// Set when the plugin asked for a host that is not allowed.
    pub denied_host: Option<String>,
    /// Set when the plugin tried to open a path outside its grants.
    pub denied_path: Option<String>,
    /// Set when a host call (HTTP, statfs) gave up because the call's
    /// deadline came, so the plugin's resulting error counts as a timeout.
    pub host_call_timed_out: bool,
    /// Set when an HTTP response was refused for its size.
    pub response_too_large: bool,
    /// Device and inode of the empty directory preopened at `/` (see
    /// `fs_sandbox`); none when `/` itself is granted.
    pub sentinel: Option<(u64, u64)>,
}

impl WasiView for State {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl types::Host for State {}

impl host::Host for State {
    fn log(&mut self, level: host::Level, message: String) {
        let plugin = self.settings.name.as_str();
        let message: String = message.chars().take(4096).collect();
        match level {
            host::Level::Trace => tracing::trace!(plugin, "{message}"),
            host::Level::Debug => tracing::debug!(plugin, "{message}"),
            host::Level::Info => tracing::info!(plugin, "{message}"),
            host::Level::Warn => tracing::warn!(plugin, "{message}"),
            host::Level::Error => tracing::error!(plugin, "{message}"),
        }
    }

    fn config(&mut self) -> String {
        self.settings.config_json.clone()
    }
}

/// Whether `allow` (entries `host` or `host:port`, `*.domain` for
/// subdomains) lets a plugin reach `url`.
pub(super) fn host_allowed(allow: &[String], url: &reqwest::Url) -> bool {
    let Some(host) = url.host_str() else {
        return false;
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port = url.port_or_known_default();
    allow.iter().any(|entry| {
        let (name, want_port) = match entry.rsplit_once(':') {
            // `[v6]:port` or `name:port`; a bare IPv6 address has no port.
            Some((n, p))
                if !n.is_empty()
                    && (n.ends_with(']') || !n.contains(':'))
                    && p.parse::<u16>().is_ok() =>
            {
                (n, p.parse::<u16>().ok())
            }
            _ => (entry.as_str(), None),
        };
        let name = name.trim_start_matches('[').trim_end_matches(']');
        let name_ok = if let Some(domain) = name.strip_prefix("*.") {
            host.len() > domain.len() + 1
                && host
                    .to_ascii_lowercase()
                    .ends_with(&format!(".{}", domain.to_ascii_lowercase()))
        } else {
            name.eq_ignore_ascii_case(host)
        };
        name_ok && want_port.is_none_or(|p| Some(p) == port)
    })
}

impl http::Host for State {
    async fn send(&mut self, req: http::Request) -> Result<http::Response, String> {
        let url =
            reqwest::Url::parse(&req.url).map_err(|e| format!("invalid URL {:?}: {e}", req.url))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!("scheme {:?} is not allowed", url.scheme()));
        }
        if !host_allowed(&self.settings.allow_hosts, &url) {
            let host = url.host_str().unwrap_or_default().to_owned();
            tracing::warn!(plugin = %self.settings.name, host = %host, "Plugin asked for a host that is not on its allow-list");
            self.denied_host = Some(host.clone());
            return Err("request refused by the host".into());
        }
        let method = reqwest::Method::from_bytes(req.method.as_bytes())
            .map_err(|_| format!("invalid method {:?}", req.method))?;
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            self.host_call_timed_out = true;
            return Err("no time left for the request".into());
        }
        let mut builder = self.http.request(method, url).timeout(left).body(req.body);
        for header in req.headers {
            builder = builder.header(header.name, header.value);
        }
        let mut response = builder.send().await.map_err(|e| {
            if e.is_timeout() {
                self.host_call_timed_out = true;
            }
            format!("request failed: {e}")
        })?;
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .map(|(name, value)| http::Header {
                name: name.as_str().to_owned(),
                value: String::from_utf8_lossy(value.as_bytes()).into_owned(),
            })
            .collect();
        let max = self.settings.limits.max_response_bytes;
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| {
            if e.is_timeout() {
                self.host_call_timed_out = true;
            }
            format!("reading the response: {e}")
        })? {
            if body.len() + chunk.len() > max {
                self.response_too_large = true;
                return Err(format!("response larger than {max} bytes"));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(http::Response {
            status,
            headers,
            body,
        })
    }
}

/// A short grace period on top of the deadline for the async timeout, so the
/// epoch trap (with its clearer reason) normally fires first.
pub const GRACE: Duration = Duration::from_millis(250);

#[cfg(test)]
mod tests {
    use super::host_allowed;

    fn allowed(allow: &[&str], url: &str) -> bool {
        let allow: Vec<String> = allow.iter().map(|s| s.to_string()).collect();
        host_allowed(&allow, &reqwest::Url::parse(url).unwrap())
    }

    #[test]
    fn allow_list() {
        assert!(allowed(&["example.com"], "https://example.com/x"));
        assert!(allowed(&["example.com"], "http://EXAMPLE.com:8080/"));
        assert!(!allowed(&["example.com"], "http://example.com.evil.net/"));
        assert!(!allowed(&["example.com"], "http://sub.example.com/"));
        assert!(allowed(&["*.example.com"], "http://sub.example.com/"));
        assert!(!allowed(&["*.example.com"], "http://example.com/"));
        assert!(allowed(&["127.0.0.1:9000"], "http://127.0.0.1:9000/"));
        assert!(!allowed(&["127.0.0.1:9000"], "http://127.0.0.1:9001/"));
        assert!(allowed(&["example.com:443"], "https://example.com/"));
        assert!(allowed(&["[::1]:80"], "http://[::1]/"));
        assert!(!allowed(&[], "http://example.com/"));
    }
}
