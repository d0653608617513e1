//! YAML 1.1 habits that Prometheus's parser (go-yaml v2) accepts and serde_yaml
//! (YAML 1.2) does not, applied where Prometheus configs rely on them.

use serde::{Deserialize, Deserializer};

/// go-yaml v2 reads these words as booleans, so `honor_labels: yes` is valid there.
fn parse_bool_word(s: &str) -> Option<bool> {
    match s {
        // Plain `true`/`false` arrive as YAML booleans already; as strings they
        // were quoted, which go-yaml rejects too.
        "y" | "Y" | "yes" | "Yes" | "YES" | "True" | "TRUE" | "on" | "On" | "ON" => Some(true),
        "n" | "N" | "no" | "No" | "NO" | "False" | "FALSE" | "off" | "Off" | "OFF" => Some(false),
        _ => None,
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum BoolOrWord {
    Bool(bool),
    Word(String),
}

fn to_bool<E: serde::de::Error>(v: BoolOrWord) -> Result<bool, E> {
    match v {
        BoolOrWord::Bool(b) => Ok(b),
        BoolOrWord::Word(w) => parse_bool_word(&w)
            .ok_or_else(|| E::custom(format!("invalid boolean {w:?} (expected true or false)"))),
    }
}

pub fn bool<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    to_bool(BoolOrWord::deserialize(d)?)
}

pub fn opt_bool<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    Option::<BoolOrWord>::deserialize(d)?
        .map(to_bool)
        .transpose()
}

#[cfg(test)]
mod tests {
    #[derive(serde::Deserialize)]
    struct T {
        #[serde(default, deserialize_with = "super::opt_bool")]
        a: Option<bool>,
    }

    #[test]
    fn yaml_1_1_words() {
        for (text, want) in [
            ("a: yes", Some(true)),
            ("a: off", Some(false)),
            ("a: true", Some(true)),
            ("{}", None),
        ] {
            let t: T = serde_yaml::from_str(text).unwrap();
            assert_eq!(t.a, want, "{text}");
        }
        assert!(serde_yaml::from_str::<T>("a: maybe").is_err());
    }
}
