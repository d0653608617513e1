//! CORS on the `/api/v1` routes, as Prometheus sets it: only when the
//! request has an `Origin`, with a fixed list of methods and headers, and
//! `Access-Control-Allow-Origin` from the `--web.cors.origin` regex
//! (fully anchored; the default `.*` answers `*`).

use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;

use super::AppState;

/// Which origins may read API responses.
#[derive(Clone, Debug)]
pub enum CorsPolicy {
    /// `--web.cors.origin=.*` (the default): `Access-Control-Allow-Origin: *`.
    Any,
    /// Origins matching this anchored regex get themselves echoed back.
    Matching(regex::Regex),
}

impl CorsPolicy {
    /// Builds the policy from the flag value (already checked to compile).
    pub fn from_flag(origin: &str) -> Result<CorsPolicy, regex::Error> {
        if origin == ".*" {
            return Ok(CorsPolicy::Any);
        }
        Ok(CorsPolicy::Matching(regex::Regex::new(&format!(
            "^(?:{origin})$"
        ))?))
    }

    fn allow_origin(&self, origin: &HeaderValue) -> Option<HeaderValue> {
        match self {
            CorsPolicy::Any => Some(HeaderValue::from_static("*")),
            CorsPolicy::Matching(re) => origin
                .to_str()
                .ok()
                .filter(|o| re.is_match(o))
                .map(|_| origin.clone()),
        }
    }
}

/// Adds the CORS headers to API responses and answers `OPTIONS` preflights
/// with Prometheus's empty success envelope.
pub async fn layer(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let origin = req.headers().get(header::ORIGIN).cloned();
    let mut response = if req.method() == Method::OPTIONS {
        super::api::json_response(
            StatusCode::OK,
            r#"{"status":"success","data":null}"#.to_owned(),
        )
    } else {
        next.run(req).await
    };
    if let Some(origin) = origin {
        let h = response.headers_mut();
        h.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static("Accept, Authorization, Content-Type, Origin"),
        );
        h.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("GET, POST, OPTIONS"),
        );
        h.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static("Date"),
        );
        h.insert(header::VARY, HeaderValue::from_static("Origin"));
        if let Some(allowed) = state.cors.allow_origin(&origin) {
            h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, allowed);
        }
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anchored_origin_regex() {
        let p = CorsPolicy::from_flag(r"https?://(a|b)\.com").unwrap();
        let ok = HeaderValue::from_static("https://a.com");
        assert_eq!(p.allow_origin(&ok), Some(ok.clone()));
        assert_eq!(
            p.allow_origin(&HeaderValue::from_static("https://a.com.evil")),
            None
        );
        assert_eq!(
            CorsPolicy::from_flag(".*")
                .unwrap()
                .allow_origin(&HeaderValue::from_static("x")),
            Some(HeaderValue::from_static("*"))
        );
    }
}
