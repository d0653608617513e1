//! `relabel_configs`, `metric_relabel_configs`, `write_relabel_configs` and
//! `alert_relabel_configs` entries, validated the way Prometheus validates them.

use std::fmt;

use serde::{Deserialize, Serialize, Serializer};

use super::labels::{is_valid_label_name, label_names};

const DEFAULT_SEPARATOR: &str = ";";
const DEFAULT_REGEX: &str = "(.*)";
const DEFAULT_REPLACEMENT: &str = "$1";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RelabelAction {
    Replace,
    Lowercase,
    Uppercase,
    Keep,
    Drop,
    KeepEqual,
    DropEqual,
    HashMod,
    LabelMap,
    LabelDrop,
    LabelKeep,
}

impl RelabelAction {
    fn parse(s: &str) -> Option<Self> {
        // Prometheus compares actions case-insensitively.
        Some(match s.to_ascii_lowercase().as_str() {
            "replace" => Self::Replace,
            "lowercase" => Self::Lowercase,
            "uppercase" => Self::Uppercase,
            "keep" => Self::Keep,
            "drop" => Self::Drop,
            "keepequal" => Self::KeepEqual,
            "dropequal" => Self::DropEqual,
            "hashmod" => Self::HashMod,
            "labelmap" => Self::LabelMap,
            "labeldrop" => Self::LabelDrop,
            "labelkeep" => Self::LabelKeep,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            Self::Replace => "replace",
            Self::Lowercase => "lowercase",
            Self::Uppercase => "uppercase",
            Self::Keep => "keep",
            Self::Drop => "drop",
            Self::KeepEqual => "keepequal",
            Self::DropEqual => "dropequal",
            Self::HashMod => "hashmod",
            Self::LabelMap => "labelmap",
            Self::LabelDrop => "labeldrop",
            Self::LabelKeep => "labelkeep",
        }
    }
}

impl fmt::Display for RelabelAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A regular expression anchored at both ends, as Prometheus anchors relabel regexes.
#[derive(Clone, Debug)]
pub struct AnchoredRegex {
    source: String,
    regex: regex::Regex,
}

impl AnchoredRegex {
    pub fn new(source: &str) -> Result<Self, regex::Error> {
        let regex = regex::Regex::new(&format!("^(?s:{source})$"))?;
        Ok(AnchoredRegex {
            source: source.to_owned(),
            regex,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.source
    }

    pub fn regex(&self) -> &regex::Regex {
        &self.regex
    }
}

impl PartialEq for AnchoredRegex {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

impl Serialize for AnchoredRegex {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.source)
    }
}

/// What the user wrote; every field optional so that "set" can be told from "default".
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename = "RelabelConfig")]
struct RawRelabelConfig {
    #[serde(default, deserialize_with = "label_names")]
    source_labels: Option<Vec<String>>,
    separator: Option<String>,
    regex: Option<String>,
    modulus: Option<u64>,
    target_label: Option<String>,
    replacement: Option<String>,
    action: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RelabelConfig {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub source_labels: Vec<String>,
    pub separator: String,
    pub regex: AnchoredRegex,
    #[serde(skip_serializing_if = "is_zero")]
    pub modulus: u64,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub target_label: String,
    pub replacement: String,
    pub action: RelabelAction,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

/// A relabel target may reference capture groups (`${1}`, `$name`).
fn is_valid_relabel_target(s: &str) -> bool {
    static RE: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    RE.get_or_init(|| {
        regex::Regex::new(r"^(?:(?:[a-zA-Z_]|\$(?:\{\w+\}|\w+))+\w*)+$").expect("static regex")
    })
    .is_match(s)
}

impl<'de> Deserialize<'de> for RelabelConfig {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = RawRelabelConfig::deserialize(d)?;
        RelabelConfig::try_from(raw).map_err(serde::de::Error::custom)
    }
}

impl TryFrom<RawRelabelConfig> for RelabelConfig {
    type Error = String;

    fn try_from(raw: RawRelabelConfig) -> Result<Self, String> {
        use RelabelAction::*;

        let action = match raw.action.as_deref() {
            None => Replace,
            Some("") => return Err("relabel action cannot be empty".into()),
            Some(a) => {
                RelabelAction::parse(a).ok_or_else(|| format!("unknown relabel action {a:?}"))?
            }
        };
        let regex_src = raw
            .regex
            .clone()
            .unwrap_or_else(|| DEFAULT_REGEX.to_owned());
        let regex = AnchoredRegex::new(&regex_src)
            .map_err(|e| format!("invalid regex {regex_src:?} in relabel config: {e}"))?;
        let cfg = RelabelConfig {
            source_labels: raw.source_labels.clone().unwrap_or_default(),
            separator: raw
                .separator
                .clone()
                .unwrap_or_else(|| DEFAULT_SEPARATOR.into()),
            regex,
            modulus: raw.modulus.unwrap_or(0),
            target_label: raw.target_label.clone().unwrap_or_default(),
            replacement: raw
                .replacement
                .clone()
                .unwrap_or_else(|| DEFAULT_REPLACEMENT.into()),
            action,
        };

        let custom_replacement = cfg.replacement != DEFAULT_REPLACEMENT;
        if cfg.modulus == 0 && action == HashMod {
            return Err("relabel configuration for hashmod requires non-zero modulus".into());
        }
        if matches!(
            action,
            Replace | HashMod | Lowercase | Uppercase | KeepEqual | DropEqual
        ) && cfg.target_label.is_empty()
        {
            return Err(format!(
                "relabel configuration for {action} action requires 'target_label' value"
            ));
        }
        if matches!(action, Replace | Lowercase | Uppercase)
            && !is_valid_relabel_target(&cfg.target_label)
        {
            return Err(format!(
                "{:?} is invalid 'target_label' for {action} action",
                cfg.target_label
            ));
        }
        if matches!(action, Lowercase | Uppercase | KeepEqual | DropEqual) && custom_replacement {
            return Err(format!("'replacement' can not be set for {action} action"));
        }
        if action == LabelMap && !is_valid_relabel_target(&cfg.replacement) {
            return Err(format!(
                "{:?} is invalid 'replacement' for {action} action",
                cfg.replacement
            ));
        }
        if matches!(action, HashMod | KeepEqual | DropEqual)
            && !is_valid_label_name(&cfg.target_label)
        {
            return Err(format!(
                "{:?} is invalid 'target_label' for {action} action",
                cfg.target_label
            ));
        }
        if matches!(action, KeepEqual | DropEqual)
            && (raw.modulus.is_some_and(|m| m != 0)
                || raw
                    .separator
                    .as_deref()
                    .is_some_and(|s| s != DEFAULT_SEPARATOR)
                || custom_replacement
                || raw.regex.as_deref().is_some_and(|r| r != DEFAULT_REGEX))
        {
            return Err(format!(
                "{action} action requires only 'source_labels' and `target_label`, and no other fields"
            ));
        }
        if matches!(action, LabelDrop | LabelKeep)
            && (raw.source_labels.is_some()
                || raw.target_label.as_deref().is_some_and(|t| !t.is_empty())
                || raw.modulus.is_some_and(|m| m != 0)
                || raw
                    .separator
                    .as_deref()
                    .is_some_and(|s| s != DEFAULT_SEPARATOR)
                || custom_replacement)
        {
            return Err(format!(
                "{action} action requires only 'regex', and no other fields"
            ));
        }
        Ok(cfg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> Result<RelabelConfig, String> {
        serde_yaml::from_str(yaml).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults() {
        let c = parse("target_label: foo").unwrap();
        assert_eq!(c.action, RelabelAction::Replace);
        assert_eq!(c.separator, ";");
        assert_eq!(c.replacement, "$1");
        assert!(c.regex.regex().is_match("anything\nat all"));
    }

    #[test]
    fn regex_is_anchored() {
        let c = parse("action: keep\nsource_labels: [a]\nregex: fo+").unwrap();
        assert!(c.regex.regex().is_match("foo"));
        assert!(!c.regex.regex().is_match("xfoo"));
        assert!(!c.regex.regex().is_match("foox"));
    }

    #[test]
    fn validation_errors() {
        for (yaml, want) in [
            ("action: replace", "requires 'target_label'"),
            ("action: hashmod\ntarget_label: x", "non-zero modulus"),
            (
                "action: labeldrop\nsource_labels: [a]",
                "requires only 'regex'",
            ),
            ("action: frobnicate", "unknown relabel action"),
            (
                "action: Replace\ntarget_label: 1abc",
                "invalid 'target_label'",
            ),
            ("regex: '(unclosed'\ntarget_label: x", "invalid regex"),
            (
                "action: lowercase\ntarget_label: x\nreplacement: y",
                "'replacement' can not be set",
            ),
            (
                "action: keepequal\nsource_labels: [a]\ntarget_label: b\nregex: x",
                "requires only 'source_labels'",
            ),
            (
                "source_labels: [1bad]\ntarget_label: x",
                "not a valid label name",
            ),
        ] {
            let err = parse(yaml).unwrap_err();
            assert!(err.contains(want), "{yaml:?}: {err}");
        }
    }
}
