//! Ember's own observability: logs and the `/metrics` registry.

pub mod logging;
pub mod metrics;
pub mod process;
pub mod time;

pub const VERSION: &str = env!("CARGO_PKG_VERSION");
pub const VERSION_LONG: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (revision: ",
    env!("EMBER_GIT_REVISION"),
    ", rustc: ",
    env!("EMBER_RUSTC_VERSION"),
    ")"
);
pub const REVISION: &str = env!("EMBER_GIT_REVISION");
pub const RUSTC_VERSION: &str = env!("EMBER_RUSTC_VERSION");
