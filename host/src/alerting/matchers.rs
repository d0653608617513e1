//! Alertmanager's matcher syntax, as written in `alertmanager.yml`
//! (`matchers: ['severity="critical"', 'job=~"api|web"']`) and in amtool's
//! and the v2 API's `filter` arguments (`alertname=Foo`, `{a="b",c!~"d"}`).

use std::collections::BTreeMap;
use std::fmt;

use crate::model::matcher::{MatchOp, Matcher};

/// A matcher on an alert's labels. Compares by its text, so configs that
/// contain matchers can still be compared.
#[derive(Clone, Debug)]
pub struct AlertMatcher(pub Matcher);

impl PartialEq for AlertMatcher {
    fn eq(&self, other: &Self) -> bool {
        self.0.name == other.0.name && self.0.op == other.0.op && self.0.value == other.0.value
    }
}

impl AlertMatcher {
    pub fn new(op: MatchOp, name: &str, value: &str) -> Result<AlertMatcher, String> {
        if !valid_label_name(name) {
            return Err(format!("invalid label name {name:?}"));
        }
        Matcher::new(op, name, value)
            .map(AlertMatcher)
            .map_err(|e| format!("invalid regular expression {value:?}: {e}"))
    }

    /// Whether the labels match (a missing label counts as empty).
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.0
            .matches(labels.get(&self.0.name).map_or("", String::as_str))
    }

    pub fn name(&self) -> &str {
        &self.0.name
    }
    pub fn value(&self) -> &str {
        &self.0.value
    }
    pub fn op(&self) -> MatchOp {
        self.0.op
    }
}

impl fmt::Display for AlertMatcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}{}", self.0.name, self.0.op, go_quote(&self.0.value))
    }
}

impl serde::Serialize for AlertMatcher {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

/// Whether every matcher matches.
pub fn all_match(matchers: &[AlertMatcher], labels: &BTreeMap<String, String>) -> bool {
    matchers.iter().all(|m| m.matches(labels))
}

/// `{a="b",c=~"d"}`, as Alertmanager prints a matcher list.
pub fn list_to_string(matchers: &[AlertMatcher]) -> String {
    let parts: Vec<String> = matchers.iter().map(ToString::to_string).collect();
    format!("{{{}}}", parts.join(","))
}

pub fn valid_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A Go-style double-quoted string (`%q` for the printable ASCII cases).
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Parses one or more comma-separated matchers, optionally in braces:
/// `a=b`, `a="b", c!~"d.*"`, `{a="b"}`.
pub fn parse_matchers(input: &str) -> Result<Vec<AlertMatcher>, String> {
    let mut s = input.trim();
    if let Some(inner) = s.strip_prefix('{') {
        s = inner
            .strip_suffix('}')
            .ok_or_else(|| format!("missing closing '}}' in {input:?}"))?
            .trim();
    }
    let mut out = Vec::new();
    for part in split_outside_quotes(s) {
        let part = part.trim();
        if part.is_empty() {
            continue;
        }
        out.push(parse_matcher(part).map_err(|e| format!("bad matcher {part:?}: {e}"))?);
    }
    Ok(out)
}

fn split_outside_quotes(s: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut start, mut in_quotes, mut escaped) = (0, false, false);
    for (i, c) in s.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if in_quotes => escaped = true,
            '"' => in_quotes = !in_quotes,
            ',' if !in_quotes => {
                parts.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&s[start..]);
    parts
}

/// One matcher: `name op value`, the value quoted or bare.
pub fn parse_matcher(s: &str) -> Result<AlertMatcher, String> {
    let s = s.trim();
    let name_len = s
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(s.len());
    let (name, rest) = s.split_at(name_len);
    if name.is_empty() {
        return Err("missing label name".into());
    }
    let rest = rest.trim_start();
    let (op, value) = if let Some(v) = rest.strip_prefix("=~") {
        (MatchOp::RegexMatch, v)
    } else if let Some(v) = rest.strip_prefix("!~") {
        (MatchOp::RegexNoMatch, v)
    } else if let Some(v) = rest.strip_prefix("!=") {
        (MatchOp::NotEqual, v)
    } else if let Some(v) = rest.strip_prefix('=') {
        (MatchOp::Equal, v)
    } else {
        return Err("expected one of =, !=, =~, !~ after the label name".into());
    };
    let value = value.trim();
    let value = if value.len() >= 2 && value.starts_with('"') && value.ends_with('"') {
        unquote(&value[1..value.len() - 1])?
    } else if value.starts_with('"') {
        return Err("unterminated quoted value".into());
    } else {
        value.to_owned()
    };
    AlertMatcher::new(op, name, &value)
}

fn unquote(s: &str) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some('n') => out.push('\n'),
                Some('t') => out.push('\t'),
                Some('r') => out.push('\r'),
                Some(c @ ('"' | '\\')) => out.push(c),
                // Regexes keep their escapes (`\d`, `\.`).
                Some(c) => {
                    out.push('\\');
                    out.push(c);
                }
                None => return Err("value ends with a lone backslash".into()),
            },
            '"' => return Err("unescaped '\"' inside a quoted value".into()),
            c => out.push(c),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn parses_quoted_bare_and_braced() {
        let m = parse_matchers(r#"{alertname="Foo", severity=~"warn|crit",team!=ops}"#).unwrap();
        assert_eq!(m.len(), 3);
        assert_eq!(m[0].to_string(), r#"alertname="Foo""#);
        assert_eq!(m[1].op(), MatchOp::RegexMatch);
        assert_eq!(m[2].value(), "ops");
        assert_eq!(
            list_to_string(&m),
            r#"{alertname="Foo",severity=~"warn|crit",team!="ops"}"#
        );
        let m = parse_matchers(r#"msg="a, \"b\"""#).unwrap();
        assert_eq!(m[0].value(), r#"a, "b""#);
        let m = parse_matchers(r#"x=~"\d+""#).unwrap();
        assert!(m[0].matches(&labels(&[("x", "42")])));
    }

    #[test]
    fn rejects_bad_matchers() {
        assert!(parse_matcher("=x").is_err());
        assert!(parse_matcher("a>b").is_err());
        assert!(parse_matcher("a=~\"(\"").is_err());
        assert!(parse_matchers("{a=b").is_err());
        assert!(parse_matcher("a=\"b").is_err());
    }

    #[test]
    fn missing_labels_are_empty() {
        let m = parse_matcher("team!=ops").unwrap();
        assert!(m.matches(&labels(&[])));
        let m = parse_matcher("team=~\".+\"").unwrap();
        assert!(!m.matches(&labels(&[])));
        assert!(m.matches(&labels(&[("team", "x")])));
    }
}
