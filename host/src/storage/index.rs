//! The inverted label index: for every label name and value, the set of
//! series (by dense head index) that carry it. Matchers are answered from
//! these sets, never by scanning every series.

use std::collections::HashMap;
use std::sync::Arc;

use roaring::RoaringBitmap;

use crate::model::{Labels, MatchOp, Matcher};

#[derive(Default)]
pub struct Postings {
    by_label: HashMap<Arc<str>, HashMap<Arc<str>, RoaringBitmap>>,
    all: RoaringBitmap,
}

impl Postings {
    pub fn add(&mut self, idx: u32, labels: &Labels) {
        self.all.insert(idx);
        for l in labels.iter() {
            self.by_label
                .entry(l.name.clone())
                .or_default()
                .entry(l.value.clone())
                .or_default()
                .insert(idx);
        }
    }

    pub fn remove(&mut self, idx: u32, labels: &Labels) {
        self.all.remove(idx);
        for l in labels.iter() {
            if let Some(values) = self.by_label.get_mut(&l.name) {
                if let Some(set) = values.get_mut(&l.value) {
                    set.remove(idx);
                    if set.is_empty() {
                        values.remove(&l.value);
                    }
                }
                if values.is_empty() {
                    self.by_label.remove(&l.name);
                }
            }
        }
    }

    /// Series matching every matcher, with Prometheus's rule that a matcher
    /// which matches the empty string also selects series lacking the label.
    pub fn select(&self, matchers: &[Matcher]) -> RoaringBitmap {
        // Start from the most selective positive matchers to keep sets small.
        let mut result: Option<RoaringBitmap> = None;
        let (positive, negative): (Vec<&Matcher>, Vec<&Matcher>) =
            matchers.iter().partition(|m| !m.matches_empty());
        for m in positive {
            let set = self.union_matching(m);
            result = Some(match result {
                Some(r) => r & set,
                None => set,
            });
            if result.as_ref().is_some_and(RoaringBitmap::is_empty) {
                return RoaringBitmap::new();
            }
        }
        let mut result = result.unwrap_or_else(|| self.all.clone());
        for m in negative {
            // Matches "" too: drop the series whose value for the label does not match.
            let values = self.by_label.get(m.name.as_str());
            if let Some(values) = values {
                for (value, set) in values {
                    if !m.matches(value) {
                        result -= set;
                    }
                }
            }
        }
        result
    }

    /// Series whose value for `m.name` is present and matches.
    fn union_matching(&self, m: &Matcher) -> RoaringBitmap {
        let Some(values) = self.by_label.get(m.name.as_str()) else {
            return RoaringBitmap::new();
        };
        if m.op == MatchOp::Equal {
            return values.get(m.value.as_str()).cloned().unwrap_or_default();
        }
        let mut out = RoaringBitmap::new();
        for (value, set) in values {
            if m.matches(value) {
                out |= set;
            }
        }
        out
    }

    pub fn label_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.by_label.keys().map(|k| k.to_string()).collect();
        names.sort();
        names
    }

    pub fn label_values(&self, name: &str) -> Vec<String> {
        let mut values: Vec<String> = self
            .by_label
            .get(name)
            .map(|v| v.keys().map(|k| k.to_string()).collect())
            .unwrap_or_default();
        values.sort();
        values
    }

    /// Number of series per value of `name`, for cardinality statistics.
    pub fn value_counts(&self, name: &str) -> Vec<(String, u64)> {
        self.by_label
            .get(name)
            .map(|v| v.iter().map(|(k, s)| (k.to_string(), s.len())).collect())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index() -> Postings {
        let mut p = Postings::default();
        let series = [
            vec![("__name__", "up"), ("job", "api"), ("env", "prod")],
            vec![("__name__", "up"), ("job", "web")],
            vec![("__name__", "up"), ("job", "db"), ("env", "")],
            vec![("__name__", "errors"), ("job", "api"), ("env", "dev")],
        ];
        for (i, s) in series.iter().enumerate() {
            p.add(i as u32, &Labels::from_pairs(s.iter().copied()).unwrap());
        }
        p
    }

    fn sel(p: &Postings, ms: &[(MatchOp, &str, &str)]) -> Vec<u32> {
        let ms: Vec<Matcher> = ms
            .iter()
            .map(|(op, n, v)| Matcher::new(*op, *n, *v).unwrap())
            .collect();
        p.select(&ms).iter().collect()
    }

    #[test]
    fn prometheus_matcher_semantics() {
        use MatchOp::*;
        let p = index();
        assert_eq!(sel(&p, &[(Equal, "__name__", "up")]), [0, 1, 2]);
        assert_eq!(
            sel(&p, &[(Equal, "__name__", "up"), (Equal, "env", "")]),
            [1, 2]
        );
        assert_eq!(
            sel(&p, &[(Equal, "__name__", "up"), (NotEqual, "env", "prod")]),
            [1, 2]
        );
        assert_eq!(
            sel(&p, &[(Equal, "__name__", "up"), (NotEqual, "env", "")]),
            [0]
        );
        assert_eq!(sel(&p, &[(RegexMatch, "job", "api|db")]), [0, 2, 3]);
        assert_eq!(sel(&p, &[(RegexMatch, "job", "ap")]), Vec::<u32>::new());
        assert_eq!(
            sel(
                &p,
                &[(Equal, "__name__", "up"), (RegexNoMatch, "job", "a.*")]
            ),
            [1, 2]
        );
        assert_eq!(
            sel(
                &p,
                &[(Equal, "__name__", "up"), (RegexMatch, "env", "|prod")]
            ),
            [0, 1, 2]
        );
        assert_eq!(sel(&p, &[(Equal, "nope", "x")]), Vec::<u32>::new());
    }
}
