//! Where scrape and Alertmanager targets come from. Today: reading target
//! group files (`file_sd_configs`) and checking target addresses; the watching
//! discovery manager and WASM discoverers plug in here later.

pub mod file;
pub mod target;
