//! Getting alerts to people: the Alertmanager notifier (`notifier.rs`).
//! Built-in routing, silences and notifier plugins are planned (issue 9).

pub mod notifier;
