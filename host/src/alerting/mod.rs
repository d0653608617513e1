//! Getting alerts to people.
//!
//! - `notifier.rs`: sends alerts to external Alertmanagers (API v2)
//! - the built-in Alertmanager, configured by `notifications:`:
//!   `matchers.rs` (Alertmanager's matcher syntax), `route.rs` (the routing
//!   tree), `inhibit.rs` (inhibition rules), `silence.rs` (silences and
//!   their file), `nflog.rs` (what was sent when, and its file),
//!   `dispatch.rs` (aggregation groups, timing, delivery to notifier
//!   plugins with retries); the HTTP side (Alertmanager's v2 API shape)
//!   is `web/alertmanager_api.rs`

pub mod dispatch;
pub mod inhibit;
pub mod matchers;
pub mod nflog;
pub mod notifier;
pub mod route;
pub mod silence;
mod state_file;
