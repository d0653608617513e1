//! Label names and label sets as they appear in configuration.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer};

/// Prometheus 2.x label-name rule (the "legacy" validation scheme).
///
/// Prometheus 3 can also accept UTF-8 names; Ember keeps the 2.x rule in
/// configuration for now so that a file `promtool` 2.42 accepts is exactly a
/// file Ember accepts.
pub fn is_valid_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    match chars.next() {
        Some(c) if c.is_ascii_alphabetic() || c == '_' => {}
        _ => return false,
    }
    chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Labels attached to targets or to everything the server sends out.
pub type LabelSet = BTreeMap<String, String>;

/// Deserializes a label map, rejecting invalid names where they are written.
pub fn label_set<'de, D: Deserializer<'de>>(d: D) -> Result<LabelSet, D::Error> {
    let map: Option<LabelSet> = Option::deserialize(d)?;
    let map = map.unwrap_or_default();
    for name in map.keys() {
        if !is_valid_label_name(name) {
            return Err(serde::de::Error::custom(format!(
                "{name:?} is not a valid label name"
            )));
        }
    }
    Ok(map)
}

/// Deserializes a list of label names (e.g. `source_labels`).
pub fn label_names<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<String>>, D::Error> {
    let names: Option<Vec<String>> = Option::deserialize(d)?;
    if let Some(names) = &names {
        for name in names {
            if !is_valid_label_name(name) {
                return Err(serde::de::Error::custom(format!(
                    "{name:?} is not a valid label name"
                )));
            }
        }
    }
    Ok(names)
}

/// `null` in YAML means "empty" for lists and maps, as in Prometheus.
pub fn nullable<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_names() {
        for ok in ["a", "_", "job", "__address__", "a1_B2"] {
            assert!(is_valid_label_name(ok), "{ok}");
        }
        for bad in ["", "1a", "a-b", "a.b", "é"] {
            assert!(!is_valid_label_name(bad), "{bad}");
        }
    }
}
