//! Rule files in Prometheus's format, validated as Prometheus validates them.
//!
//! Decoding reports structural problems (unknown fields, wrong types) the
//! way Go's yaml decoder does and stops there; validation then reports every
//! problem it finds with the file, group, rule and position, in promtool's
//! order and words.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::template::Template;
use super::yaml::{self, Kind, Node};
use crate::config::labels::is_valid_label_name;

/// A rule file that failed to load: every problem found, one per line.
#[derive(Debug, thiserror::Error)]
#[error("{}", .errors.iter().map(|e| format!("{}: {e}", .path.display())).collect::<Vec<_>>().join("\n"))]
pub struct RuleFileError {
    pub path: PathBuf,
    pub errors: Vec<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct GroupDef {
    pub name: String,
    pub interval_ms: Option<u64>,
    pub query_offset_ms: Option<u64>,
    /// 0 means no limit.
    pub limit: u64,
    pub labels: BTreeMap<String, String>,
    pub rules: Vec<RuleDef>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RuleKind {
    Recording,
    Alerting,
}

#[derive(Clone, Debug, PartialEq)]
pub struct RuleDef {
    pub kind: RuleKind,
    /// The `record` or `alert` name.
    pub name: String,
    pub expr: String,
    pub for_ms: u64,
    pub keep_firing_for_ms: u64,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
}

/// Reads and validates one rule file.
pub fn load(path: &Path) -> Result<Vec<GroupDef>, RuleFileError> {
    let text = std::fs::read_to_string(path).map_err(|e| RuleFileError {
        path: path.to_owned(),
        errors: vec![e.to_string()],
    })?;
    parse(&text).map_err(|errors| RuleFileError {
        path: path.to_owned(),
        errors,
    })
}

/// Parses and validates rule file text.
pub fn parse(text: &str) -> Result<Vec<GroupDef>, Vec<String>> {
    let doc = yaml::parse(text).map_err(|e| vec![e])?;
    let Some(doc) = doc else {
        return Ok(Vec::new());
    };
    let mut dec = Decoder::default();
    let groups = dec.file(&doc);
    if let Some(fatal) = dec.fatal {
        return Err(vec![fatal]);
    }
    if !dec.errors.is_empty() {
        let mut lines = vec!["yaml: unmarshal errors:".to_owned()];
        lines.extend(dec.errors.iter().map(|e| format!("  {e}")));
        return Err(vec![lines.join("\n")]);
    }
    let errors = validate(&groups);
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(groups.into_iter().map(RawGroup::into_def).collect())
}

/// A scalar with where it was written; `None` position means absent.
#[derive(Clone, Debug, Default)]
struct Spanned {
    value: String,
    pos: Option<(usize, usize)>,
}

impl Spanned {
    fn pos(&self) -> (usize, usize) {
        self.pos.unwrap_or((0, 0))
    }
}

#[derive(Debug, Default)]
struct RawGroup {
    pos: (usize, usize),
    name: String,
    interval_ms: Option<u64>,
    query_offset_ms: Option<u64>,
    limit: u64,
    labels: Vec<(String, String)>,
    rules: Vec<RawRule>,
}

#[derive(Debug, Default)]
struct RawRule {
    record: Spanned,
    alert: Spanned,
    expr: Spanned,
    for_ms: u64,
    keep_firing_for_ms: u64,
    labels: Vec<(String, String)>,
    annotations: Vec<(String, String)>,
}

impl RawGroup {
    fn into_def(self) -> GroupDef {
        GroupDef {
            name: self.name,
            interval_ms: self.interval_ms,
            query_offset_ms: self.query_offset_ms,
            limit: self.limit,
            labels: self.labels.into_iter().collect(),
            rules: self
                .rules
                .into_iter()
                .map(|r| {
                    let (kind, name) = if r.record.value.is_empty() {
                        (RuleKind::Alerting, r.alert.value)
                    } else {
                        (RuleKind::Recording, r.record.value)
                    };
                    RuleDef {
                        kind,
                        name,
                        expr: r.expr.value,
                        for_ms: r.for_ms,
                        keep_firing_for_ms: r.keep_firing_for_ms,
                        labels: r.labels.into_iter().collect(),
                        annotations: r.annotations.into_iter().collect(),
                    }
                })
                .collect(),
        }
    }
}

/// Decodes the tree into raw groups, collecting Go-yaml-style errors.
#[derive(Default)]
struct Decoder {
    errors: Vec<String>,
    /// A duration's own unmarshaler failing ends decoding with its message
    /// alone, as in Go.
    fatal: Option<String>,
}

impl Decoder {
    fn mismatch(&mut self, node: &Node, into: &str) {
        let shown = match &node.kind {
            Kind::Scalar { value, .. } => format!("{} `{value}`", node.tag()),
            _ => node.tag().to_owned(),
        };
        self.errors.push(format!(
            "line {}: cannot unmarshal {shown} into {into}",
            node.line
        ));
    }

    /// The entries of a mapping, reporting unknown keys against `ty`.
    fn fields<'a>(
        &mut self,
        node: &'a Node,
        ty: &str,
        known: &[&str],
    ) -> Option<Vec<(&'a str, &'a Node)>> {
        if node.is_null() {
            return Some(Vec::new());
        }
        let Kind::Map(entries) = &node.kind else {
            self.mismatch(node, ty);
            return None;
        };
        let mut out = Vec::new();
        for (k, v) in entries {
            let Kind::Scalar { value: key, .. } = &k.kind else {
                self.mismatch(k, "string");
                continue;
            };
            if !known.contains(&key.as_str()) {
                self.errors.push(format!(
                    "line {}: field {key} not found in type {ty}",
                    k.line
                ));
                continue;
            }
            if out.iter().any(|(seen, _)| seen == key) {
                self.errors.push(format!(
                    "line {}: mapping key {key:?} already defined",
                    k.line
                ));
                continue;
            }
            out.push((key.as_str(), v));
        }
        Some(out)
    }

    fn seq<'a>(&mut self, node: &'a Node, ty: &str) -> &'a [Node] {
        match &node.kind {
            Kind::Seq(items) => items,
            _ if node.is_null() => &[],
            _ => {
                self.mismatch(node, ty);
                &[]
            }
        }
    }

    fn string(&mut self, node: &Node) -> Spanned {
        match &node.kind {
            Kind::Scalar { value, .. } => Spanned {
                value: if node.is_null() {
                    String::new()
                } else {
                    value.clone()
                },
                pos: Some(node.pos()),
            },
            _ => {
                self.mismatch(node, "string");
                Spanned::default()
            }
        }
    }

    /// A Prometheus duration; errors here stop the file as in Go, where the
    /// duration's own unmarshaler fails the whole decode.
    fn duration(&mut self, node: &Node) -> Option<u64> {
        let s = self.string(node);
        if s.value.is_empty() {
            return None;
        }
        match crate::config::duration::parse(&s.value) {
            Ok(d) => Some(d.as_millis()),
            Err(e) => {
                self.fatal.get_or_insert(e.to_string());
                None
            }
        }
    }

    fn string_map(&mut self, node: &Node) -> Vec<(String, String)> {
        if node.is_null() {
            return Vec::new();
        }
        let Kind::Map(entries) = &node.kind else {
            self.mismatch(node, "map[string]string");
            return Vec::new();
        };
        let mut out: Vec<(String, String)> = Vec::new();
        for (k, v) in entries {
            let key = self.string(k).value;
            let value = self.string(v).value;
            if let Some(slot) = out.iter_mut().find(|(n, _)| *n == key) {
                slot.1 = value;
            } else {
                out.push((key, value));
            }
        }
        out
    }

    fn file(&mut self, doc: &Node) -> Vec<RawGroup> {
        let Some(fields) = self.fields(doc, "rulefmt.RuleGroups", &["groups"]) else {
            return Vec::new();
        };
        let mut groups = Vec::new();
        for (_, node) in fields {
            for g in self.seq(node, "[]rulefmt.RuleGroup") {
                groups.push(self.group(g));
            }
        }
        groups
    }

    fn group(&mut self, node: &Node) -> RawGroup {
        let mut group = RawGroup {
            pos: first_key_pos(node),
            ..RawGroup::default()
        };
        let known = [
            "name",
            "interval",
            "query_offset",
            "limit",
            "labels",
            "rules",
        ];
        let Some(fields) = self.fields(node, "rulefmt.RuleGroup", &known) else {
            return group;
        };
        for (key, v) in fields {
            match key {
                "name" => group.name = self.string(v).value,
                "interval" => group.interval_ms = self.duration(v),
                "query_offset" => group.query_offset_ms = self.duration(v),
                "limit" => {
                    let s = self.string(v);
                    if !s.value.is_empty() {
                        match s.value.parse::<i64>() {
                            // A negative limit means none, as in Prometheus.
                            Ok(n) => group.limit = n.max(0) as u64,
                            Err(_) => self.mismatch(v, "int"),
                        }
                    }
                }
                "labels" => group.labels = self.string_map(v),
                _ => {
                    for r in self.seq(v, "[]rulefmt.RuleNode") {
                        group.rules.push(self.rule(r));
                    }
                }
            }
        }
        group
    }

    fn rule(&mut self, node: &Node) -> RawRule {
        let mut rule = RawRule::default();
        let known = [
            "record",
            "alert",
            "expr",
            "for",
            "keep_firing_for",
            "labels",
            "annotations",
        ];
        let Some(fields) = self.fields(node, "rulefmt.RuleNode", &known) else {
            return rule;
        };
        for (key, v) in fields {
            match key {
                "record" => rule.record = self.string(v),
                "alert" => rule.alert = self.string(v),
                "expr" => rule.expr = self.string(v),
                "for" => rule.for_ms = self.duration(v).unwrap_or(0),
                "keep_firing_for" => rule.keep_firing_for_ms = self.duration(v).unwrap_or(0),
                "labels" => rule.labels = self.string_map(v),
                _ => rule.annotations = self.string_map(v),
            }
        }
        rule
    }
}

fn first_key_pos(node: &Node) -> (usize, usize) {
    match &node.kind {
        Kind::Map(entries) => entries.first().map(|(k, _)| k.pos()).unwrap_or(node.pos()),
        _ => node.pos(),
    }
}

fn is_valid_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    match chars.next() {
        Some(c) if c.is_ascii_alphabetic() || c == '_' || c == ':' => {}
        _ => return false,
    }
    chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// Prometheus's checks, in its order.
fn validate(groups: &[RawGroup]) -> Vec<String> {
    let mut errors = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for g in groups {
        let (line, col) = g.pos;
        if g.name.is_empty() {
            errors.push(format!("{line}:{col}: Groupname must not be empty"));
        }
        if !seen.insert(g.name.as_str()) {
            errors.push(format!(
                "{line}:{col}: groupname: {:?} is repeated in the same file",
                g.name
            ));
        }
        for (name, value) in &g.labels {
            if !is_valid_label_name(name) || name == "__name__" {
                errors.push(format!("group {:?}: invalid label name: {name}", g.name));
            }
            let _ = value;
        }
        for (i, r) in g.rules.iter().enumerate() {
            let name = if r.alert.value.is_empty() {
                &r.record.value
            } else {
                &r.alert.value
            };
            let at = |pos: Option<(usize, usize)>, alt: Option<(usize, usize)>| -> String {
                let head = format!("group {:?}, rule {}, {:?}", g.name, i + 1, name);
                match (pos, alt) {
                    (Some((l, c)), Some((la, ca))) => format!("{l}:{c}: {la}:{ca}: {head}"),
                    (Some((l, c)), None) => format!("{l}:{c}: {head}"),
                    _ => head,
                }
            };
            for (pos, alt, msg) in validate_rule(r) {
                errors.push(format!("{}: {msg}", at(pos, alt)));
            }
        }
    }
    errors
}

type Pos = Option<(usize, usize)>;

fn validate_rule(r: &RawRule) -> Vec<(Pos, Pos, String)> {
    let mut out = Vec::new();
    let record = Some(r.record.pos());
    if !r.record.value.is_empty() && !r.alert.value.is_empty() {
        out.push((
            record,
            Some(r.alert.pos()),
            "only one of 'record' and 'alert' must be set".to_owned(),
        ));
    }
    if r.record.value.is_empty() && r.alert.value.is_empty() {
        out.push((
            record,
            None,
            "one of 'record' or 'alert' must be set".to_owned(),
        ));
    }
    if r.expr.value.is_empty() {
        out.push((
            Some(r.expr.pos()),
            None,
            "field 'expr' must be set in rule".to_owned(),
        ));
    } else if let Err(e) = promql_parser::parser::parse(&r.expr.value) {
        out.push((
            Some(r.expr.pos()),
            None,
            format!("could not parse expression: {e}"),
        ));
    }
    if !r.record.value.is_empty() {
        if !r.annotations.is_empty() {
            out.push((
                record,
                None,
                "invalid field 'annotations' in recording rule".to_owned(),
            ));
        }
        if r.for_ms != 0 {
            out.push((
                record,
                None,
                "invalid field 'for' in recording rule".to_owned(),
            ));
        }
        if r.keep_firing_for_ms != 0 {
            out.push((
                record,
                None,
                "invalid field 'keep_firing_for' in recording rule".to_owned(),
            ));
        }
        if !is_valid_metric_name(&r.record.value) {
            out.push((
                record,
                None,
                format!("invalid recording rule name: {}", r.record.value),
            ));
        }
    }
    for (k, _) in &r.labels {
        if !is_valid_label_name(k) || k == "__name__" {
            out.push((None, None, format!("invalid label name: {k}")));
        }
    }
    for (k, _) in &r.annotations {
        if !is_valid_label_name(k) {
            out.push((None, None, format!("invalid annotation name: {k}")));
        }
    }
    // Templates are parsed (not run) for alerting rules only, as in Prometheus.
    if !r.alert.value.is_empty() {
        let tmpl_name = format!("__alert_{}", r.alert.value);
        for (what, map) in [("label", &r.labels), ("annotation", &r.annotations)] {
            for (k, v) in map {
                if let Err(e) = Template::parse(&tmpl_name, v) {
                    out.push((None, None, format!("{what} {k:?}: {e}")));
                }
            }
        }
    }
    out
}

/// Recording rules that would write the same series: promtool's
/// `duplicate-rules` lint (name and labels equal, expressions aside).
pub fn duplicate_rules(groups: &[GroupDef]) -> Vec<(String, BTreeMap<String, String>)> {
    let mut all: Vec<(String, BTreeMap<String, String>)> = groups
        .iter()
        .flat_map(|g| &g.rules)
        .filter(|r| r.kind == RuleKind::Recording)
        .map(|r| (r.name.clone(), r.labels.clone()))
        .collect();
    all.sort();
    let mut dups = Vec::new();
    for pair in all.windows(2) {
        if pair[0] == pair[1] && dups.last() != Some(&pair[0]) {
            dups.push(pair[0].clone());
        }
    }
    dups
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errs(text: &str) -> Vec<String> {
        parse(text).expect_err("should fail")
    }

    #[test]
    fn valid_file() {
        let groups = parse(
            "groups:\n- name: g\n  interval: 30s\n  limit: 10\n  query_offset: 1m\n  labels: {team: a}\n  rules:\n  - record: job:up:sum\n    expr: sum by (job) (up)\n    labels: {x: 1}\n  - alert: Down\n    expr: up == 0\n    for: 5m\n    keep_firing_for: 1m\n    annotations:\n      summary: '{{ $labels.instance }} is down ({{ $value | humanize }})'\n",
        )
        .unwrap();
        assert_eq!(groups.len(), 1);
        let g = &groups[0];
        assert_eq!(g.interval_ms, Some(30_000));
        assert_eq!(g.query_offset_ms, Some(60_000));
        assert_eq!(g.limit, 10);
        assert_eq!(g.rules[0].labels["x"], "1");
        assert_eq!(g.rules[1].kind, RuleKind::Alerting);
        assert_eq!(g.rules[1].for_ms, 300_000);
        assert!(parse("").unwrap().is_empty());
        assert!(parse("groups:\n").unwrap().is_empty());
    }

    #[test]
    fn promtool_messages() {
        assert_eq!(
            errs("groups:\n- name: a\n  rules:\n  - record: a\n    expr: up\n    for: 1m\n"),
            ["4:13: group \"a\", rule 1, \"a\": invalid field 'for' in recording rule"]
        );
        assert_eq!(
            errs(
                "groups:\n  - name: g\n    rules:\n      - alert: Down\n        record: x\n        expr: up\n"
            ),
            [
                "5:17: 4:16: group \"g\", rule 1, \"Down\": only one of 'record' and 'alert' must be set"
            ]
        );
        assert_eq!(
            errs("groups:\n- name: a\n  rules:\n  - alert: a\n"),
            ["0:0: group \"a\", rule 1, \"a\": field 'expr' must be set in rule"]
        );
        assert_eq!(
            errs("groups:\n- name: g\n  rules: []\n- name: g\n  rules: []\n"),
            ["4:3: groupname: \"g\" is repeated in the same file"]
        );
        assert_eq!(
            errs(
                "groups:\n- name: a\n  rules:\n  - alert: A\n    expr: up\n    annotations:\n      s: \"{{ $x }}\"\n"
            ),
            [
                "group \"a\", rule 1, \"A\": annotation \"s\": template: __alert_A:1: undefined variable \"$x\""
            ]
        );
        let e = errs("groups:\n- name: a\n  rules:\n  - record: a\n    expr: up\n    foo: 1\n");
        assert!(e[0].contains("line 6: field foo not found in type rulefmt.RuleNode"));
        let e = errs("groups:\n- name: a\n  interval: -1s\n");
        assert!(e[0].contains("not a valid duration string"), "{e:?}");
    }

    #[test]
    fn duplicates() {
        let g = parse("groups:\n- name: a\n  rules:\n  - record: a\n    expr: up\n  - record: a\n    expr: up\n").unwrap();
        assert_eq!(duplicate_rules(&g).len(), 1);
    }
}
