//! Pushgateway-compatible push: batch jobs push metrics over HTTP, Ember
//! keeps them per group (persisted), serves them like a Pushgateway, and
//! ingests them into its own storage every scrape interval.

pub mod grouping;
pub mod http;
pub mod ingest;
pub mod store;
