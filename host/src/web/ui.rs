//! The web UI: the Vite build of `ui/` embedded at compile time
//! (`host/build.rs`), served under the route prefix. Client-side routes all
//! answer `index.html`; hashed files under `assets/` are cached for good.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;

use super::AppState;

include!(concat!(env!("OUT_DIR"), "/ui_assets.rs"));

/// Pages of the single-page app; each serves `index.html`.
pub const PAGES: &[&str] = &[
    "/graph",
    "/query",
    "/alerts",
    "/rules",
    "/targets",
    "/service-discovery",
    "/status",
    "/flags",
    "/config",
    "/tsdb-status",
];

/// The placeholder in `ui/index.html` that gets the route prefix.
const BASE_PLACEHOLDER: &str = "<base href=\"/\" data-ember-base />";

fn asset(path: &str) -> Option<&'static [u8]> {
    ASSETS.iter().find(|(p, _)| *p == path).map(|(_, b)| *b)
}

/// `index.html` with `<base href="<prefix>/">`, so relative asset URLs and
/// the app's routes resolve under the route prefix.
pub fn index_html(route_prefix: &str) -> String {
    let page = asset("index.html")
        .map(String::from_utf8_lossy)
        .unwrap_or_default();
    let prefix = route_prefix.trim_end_matches('/');
    let base = format!("<base href=\"{}/\" data-ember-base />", escape_attr(prefix));
    page.replacen(BASE_PLACEHOLDER, &base, 1)
}

fn escape_attr(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c => out.push(c),
        }
    }
    out
}

fn content_type(path: &str) -> &'static str {
    match path.rsplit_once('.').map(|(_, ext)| ext) {
        Some("html") => "text/html; charset=utf-8",
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("json" | "map") => "application/json",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("ico") => "image/x-icon",
        Some("woff2") => "font/woff2",
        Some("txt") => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

/// Routes relative to the route prefix.
pub fn routes(route_prefix: &str) -> Router<AppState> {
    let index = Arc::new(index_html(route_prefix));
    let graph = format!("{}/graph", route_prefix.trim_end_matches('/'));
    let mut router = Router::new()
        .route("/", get(move || async move { Redirect::to(&graph) }))
        .route("/assets/{*file}", get(serve_asset));
    for page in PAGES {
        let index = index.clone();
        router = router.route(page, get(move || page_response(index.clone())));
    }
    router
}

async fn page_response(index: Arc<String>) -> Response {
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            ),
            // The page names the current hashed assets: always revalidate it.
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
        ],
        index.as_str().to_owned(),
    )
        .into_response()
}

async fn serve_asset(State(_): State<AppState>, Path(file): Path<String>) -> Response {
    let path = format!("assets/{file}");
    match asset(&path) {
        Some(body) => (
            [
                (
                    header::CONTENT_TYPE,
                    HeaderValue::from_static(content_type(&path)),
                ),
                // Vite puts a content hash in every file name under assets/.
                (
                    header::CACHE_CONTROL,
                    HeaderValue::from_static("public, max-age=31536000, immutable"),
                ),
                (
                    header::X_CONTENT_TYPE_OPTIONS,
                    HeaderValue::from_static("nosniff"),
                ),
            ],
            body,
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "404 page not found\n").into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ui_build_is_embedded() {
        let index = asset("index.html").expect("index.html embedded");
        let text = String::from_utf8_lossy(index);
        assert!(text.contains(BASE_PLACEHOLDER), "{text}");
        assert!(
            ASSETS
                .iter()
                .any(|(p, _)| p.starts_with("assets/") && p.ends_with(".js"))
        );
    }

    #[test]
    fn base_carries_the_escaped_prefix() {
        assert!(index_html("").contains("<base href=\"/\" data-ember-base />"));
        assert!(index_html("/ember/").contains("<base href=\"/ember/\" data-ember-base />"));
        assert!(index_html("/a\"b").contains("<base href=\"/a&quot;b/\""));
    }

    #[test]
    fn content_types() {
        assert_eq!(
            content_type("assets/x.js"),
            "text/javascript; charset=utf-8"
        );
        assert_eq!(content_type("assets/x.css"), "text/css; charset=utf-8");
        assert_eq!(content_type("x.bin"), "application/octet-stream");
    }
}
