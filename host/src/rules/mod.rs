//! Recording and alerting rules: rule files (`file.rs`, read through the
//! position-keeping YAML tree in `yaml.rs`), the template language of labels
//! and annotations (`template.rs`), one group's rules and evaluation
//! (`group.rs`), the per-group tasks reconciled on reload (`manager.rs`),
//! self-metrics (`metrics.rs`).

pub mod file;
pub mod group;
pub mod manager;
pub mod metrics;
pub mod template;
pub mod yaml;
