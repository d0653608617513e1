//! Label sets: the identity of a series.

use std::fmt;

/// One label. Names and values are shared by many series in memory, so they
/// are reference-counted strings.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Label {
    pub name: std::sync::Arc<str>,
    pub value: std::sync::Arc<str>,
}

/// A label set sorted by name, without empty values (an empty value means
/// "no such label" in Prometheus) and without duplicate names. Immutable and
/// shared: cloning is a reference-count increment, so the scrape and write
/// paths can hand label sets around without allocating.
#[derive(Clone, Debug)]
pub struct Labels {
    labels: std::sync::Arc<[Label]>,
    /// [`Labels::stable_hash`], computed once: series lookups and hash sets
    /// then hash a u64 instead of every label string.
    hash: u64,
}

impl Labels {
    fn from_sorted(labels: Vec<Label>) -> Labels {
        let hash = stable_hash_of(&labels);
        Labels {
            labels: labels.into(),
            hash,
        }
    }
}

fn stable_hash_of(labels: &[Label]) -> u64 {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    for l in labels {
        h.update(l.name.as_bytes());
        h.update(&[0xff]);
        h.update(l.value.as_bytes());
        h.update(&[0xff]);
    }
    h.digest()
}

impl Default for Labels {
    fn default() -> Self {
        Labels::from_sorted(Vec::new())
    }
}

impl PartialEq for Labels {
    fn eq(&self, other: &Self) -> bool {
        // Shared sets (the head's canonical copy handed back to a scrape
        // cache) compare by pointer; others by hash, then content.
        std::sync::Arc::ptr_eq(&self.labels, &other.labels)
            || (self.hash == other.hash && self.labels == other.labels)
    }
}

impl Eq for Labels {}

impl std::hash::Hash for Labels {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
}

impl PartialOrd for Labels {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Labels {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.labels.cmp(&other.labels)
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LabelsError {
    #[error("label set has duplicate label name {0:?}")]
    DuplicateName(String),
    #[error("label set has an empty label name")]
    EmptyName,
}

pub const METRIC_NAME: &str = "__name__";

impl Labels {
    /// Builds a label set from pairs in any order.
    pub fn from_pairs<N: AsRef<str>, V: AsRef<str>>(
        pairs: impl IntoIterator<Item = (N, V)>,
    ) -> Result<Labels, LabelsError> {
        let mut labels: Vec<Label> = pairs
            .into_iter()
            .filter(|(_, v)| !v.as_ref().is_empty())
            .map(|(n, v)| Label {
                name: n.as_ref().into(),
                value: v.as_ref().into(),
            })
            .collect();
        labels.sort_by(|a, b| a.name.cmp(&b.name));
        for pair in labels.windows(2) {
            if pair[0].name == pair[1].name {
                return Err(LabelsError::DuplicateName(pair[0].name.to_string()));
            }
        }
        if labels.first().is_some_and(|l| l.name.is_empty()) {
            return Err(LabelsError::EmptyName);
        }
        Ok(Labels::from_sorted(labels))
    }

    /// The same labels with every string passed through `intern`, so a store
    /// can share one allocation per distinct name and value across series.
    pub fn interned(
        &self,
        mut intern: impl FnMut(&std::sync::Arc<str>) -> std::sync::Arc<str>,
    ) -> Labels {
        let labels: Vec<Label> = self
            .labels
            .iter()
            .map(|l| Label {
                name: intern(&l.name),
                value: intern(&l.value),
            })
            .collect();
        // Same strings, same hash.
        Labels {
            labels: labels.into(),
            hash: self.hash,
        }
    }

    /// Whether both are the same shared allocation (the head's canonical
    /// copy handed out earlier): a pointer compare, no string reads.
    pub fn same_allocation(&self, other: &Labels) -> bool {
        std::sync::Arc::ptr_eq(&self.labels, &other.labels)
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.labels
            .binary_search_by(|l| (*l.name).cmp(name))
            .ok()
            .map(|i| &*self.labels[i].value)
    }

    pub fn metric_name(&self) -> Option<&str> {
        self.get(METRIC_NAME)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Label> {
        self.labels.iter()
    }

    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// A stable 64-bit hash of the label set: the same on every machine and
    /// in every release, because series ids derived from it are persisted.
    pub fn stable_hash(&self) -> u64 {
        self.hash
    }
}

impl fmt::Display for Labels {
    /// `name{a="b", c="d"}` as Prometheus prints series.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(name) = self.metric_name() {
            f.write_str(name)?;
        }
        f.write_str("{")?;
        let mut first = true;
        for l in self.labels.iter().filter(|l| &*l.name != METRIC_NAME) {
            if !first {
                f.write_str(", ")?;
            }
            first = false;
            write!(f, "{}={:?}", l.name, &*l.value)?;
        }
        f.write_str("}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorted_and_without_empty_values() {
        let l = Labels::from_pairs([("job", "a"), ("__name__", "up"), ("empty", "")]).unwrap();
        let names: Vec<&str> = l.iter().map(|l| &*l.name).collect();
        assert_eq!(names, ["__name__", "job"]);
        assert_eq!(l.get("job"), Some("a"));
        assert_eq!(l.get("empty"), None);
        assert_eq!(l.to_string(), "up{job=\"a\"}");
    }

    #[test]
    fn duplicates_rejected() {
        assert!(matches!(
            Labels::from_pairs([("a", "1"), ("a", "2")]),
            Err(LabelsError::DuplicateName(_))
        ));
    }

    #[test]
    fn hash_is_order_independent_and_stable() {
        let a = Labels::from_pairs([("a", "1"), ("b", "2")]).unwrap();
        let b = Labels::from_pairs([("b", "2"), ("a", "1")]).unwrap();
        assert_eq!(a.stable_hash(), b.stable_hash());
        // Separators keep {a="1b"} and {a="1", b=""}-like sets apart.
        let c = Labels::from_pairs([("a", "1b")]).unwrap();
        assert_ne!(a.stable_hash(), c.stable_hash());
        // Pinned: persisted ids depend on this exact function.
        assert_eq!(
            Labels::from_pairs([("__name__", "up")])
                .unwrap()
                .stable_hash(),
            12_816_904_576_805_619_088_u64
        );
    }
}
