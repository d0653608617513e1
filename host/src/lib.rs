//! Ember: a Prometheus-compatible monitoring server.
//!
//! Each module is one subsystem; see ARCHITECTURE.md for how they connect.

pub mod alerting;
pub mod cli;
pub mod config;
pub mod discovery;
pub mod model;
pub mod plugins;
pub mod promql;
pub mod push;
pub mod remote;
pub mod rules;
pub mod scrape;
pub mod server;
pub mod sql;
pub mod storage;
pub mod systemd;
pub mod telemetry;
pub mod web;
