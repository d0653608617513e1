//! Recording and alerting rules: rule files (`file.rs`, read through the
//! position-keeping YAML tree in `yaml.rs`), the template language of labels
//! and annotations (`template.rs`).

pub mod file;
pub mod template;
pub mod yaml;
