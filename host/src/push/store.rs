//! Pushed groups: validation with the Pushgateway's rules, PUT/POST
//! semantics, and persistence in the data directory (written and synced
//! before a push is acknowledged, so it survives a crash).

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use super::grouping::{Grouping, to_path};
use crate::model::exposition::{Entry, Format, Parser};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PushedSample {
    /// Every label, `__name__` and the grouping labels included.
    pub labels: BTreeMap<String, String>,
    /// IEEE-754 bits, so NaN and ±Inf persist exactly.
    pub value_bits: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Family {
    pub name: String,
    /// `counter`, `gauge`, `histogram`, `summary` or `untyped`.
    pub kind: String,
    pub help: String,
    pub samples: Vec<PushedSample>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Group {
    pub grouping: Grouping,
    pub families: BTreeMap<String, Family>,
    /// Unix seconds of the last successful push (0 if none).
    pub push_time: f64,
    /// Unix seconds of the last failed push (0 if none).
    pub push_failure_time: f64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// Replace the whole group.
    Put,
    /// Replace only the metric families present in the push.
    Post,
}

#[derive(Debug, thiserror::Error)]
pub enum PushError {
    #[error("{0}")]
    BadRequest(String),
    #[error("cannot persist pushed metrics: {0}")]
    Persist(String),
}

pub struct PushStore {
    path: PathBuf,
    groups: Mutex<BTreeMap<String, Group>>,
}

fn now_secs() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

fn key(grouping: &Grouping) -> String {
    to_path(grouping)
}

/// Which family a sample name belongs to, given the family being declared.
fn belongs(family: &str, kind: &str, sample: &str) -> bool {
    if sample == family {
        return true;
    }
    let Some(suffix) = sample.strip_prefix(family) else {
        return false;
    };
    match kind {
        "histogram" => matches!(suffix, "_bucket" | "_sum" | "_count"),
        "summary" => matches!(suffix, "_sum" | "_count"),
        "counter" => matches!(suffix, "_total" | "_created"),
        _ => false,
    }
}

/// Parses and validates a push body into families for `grouping`.
fn parse_body(body: &str, grouping: &Grouping) -> Result<BTreeMap<String, Family>, String> {
    let mut families: BTreeMap<String, Family> = BTreeMap::new();
    let mut declared: BTreeMap<String, (String, String)> = BTreeMap::new();
    let mut current: Option<String> = None;
    for entry in Parser::new(body, Format::Text) {
        match entry.map_err(|e| format!("invalid push body: {e}"))? {
            Entry::Help { family, help } => {
                declared.entry(family.to_string()).or_default().1 = help.into_owned();
                current = Some(family.into_owned());
            }
            Entry::Type { family, kind } => {
                let kind = match kind.as_str() {
                    "unknown" => "untyped",
                    k => k,
                };
                declared.entry(family.to_string()).or_default().0 = kind.to_owned();
                current = Some(family.into_owned());
            }
            Entry::Unit { .. } => {}
            Entry::Sample(s) => {
                if s.timestamp_ms.is_some() {
                    return Err(format!(
                        "pushed metrics must not have timestamps (sample {})",
                        s.series
                    ));
                }
                let labels = s
                    .labels()
                    .map_err(|e| format!("sample {}: {e}", s.series))?;
                let name = labels.metric_name().unwrap_or("").to_owned();
                let mut map: BTreeMap<String, String> = labels
                    .iter()
                    .map(|l| (l.name.to_string(), l.value.to_string()))
                    .collect();
                for (k, v) in grouping {
                    match map.get(k) {
                        Some(existing) if existing != v => {
                            return Err(format!(
                                "pushed metric {name} has label {k}={existing:?}, which conflicts with the grouping key's {k}={v:?}"
                            ));
                        }
                        _ => {
                            map.insert(k.clone(), v.clone());
                        }
                    }
                }
                let family = match &current {
                    Some(f) if belongs(f, declared.get(f).map_or("", |d| d.0.as_str()), &name) => {
                        f.clone()
                    }
                    _ => name.clone(),
                };
                let (kind, help) = declared.get(&family).cloned().unwrap_or_default();
                let fam = families.entry(family.clone()).or_insert_with(|| Family {
                    name: family.clone(),
                    kind: if kind.is_empty() {
                        "untyped".into()
                    } else {
                        kind
                    },
                    help,
                    samples: Vec::new(),
                });
                if fam.samples.iter().any(|x| x.labels == map) {
                    return Err(format!("duplicate sample {} in push", s.series));
                }
                fam.samples.push(PushedSample {
                    labels: map,
                    value_bits: s.value.to_bits(),
                });
            }
        }
    }
    Ok(families)
}

impl PushStore {
    /// Opens (or creates) the store under `dir`. A damaged file is kept
    /// aside as `groups.json.corrupt` with a warning, never silently lost.
    pub fn open(dir: &Path) -> Result<PushStore, String> {
        fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let path = dir.join("groups.json");
        let groups = match fs::read(&path) {
            Ok(bytes) => match serde_json::from_slice::<Vec<Group>>(&bytes) {
                Ok(list) => list.into_iter().map(|g| (key(&g.grouping), g)).collect(),
                Err(e) => {
                    let aside = dir.join("groups.json.corrupt");
                    tracing::warn!(file = %path.display(), err = %e, aside = %aside.display(), "Pushed groups file is damaged; moved aside, starting empty");
                    let _ = fs::rename(&path, &aside);
                    BTreeMap::new()
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
        };
        Ok(PushStore {
            path,
            groups: Mutex::new(groups),
        })
    }

    fn persist(&self, groups: &BTreeMap<String, Group>) -> Result<(), PushError> {
        let list: Vec<&Group> = groups.values().collect();
        let bytes = serde_json::to_vec(&list).map_err(|e| PushError::Persist(e.to_string()))?;
        let tmp = self.path.with_extension("json.tmp");
        let write = || -> std::io::Result<()> {
            let mut f = fs::File::create(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_all()?;
            fs::rename(&tmp, &self.path)?;
            if let Some(dir) = self.path.parent() {
                fs::File::open(dir)?.sync_all()?;
            }
            Ok(())
        };
        write().map_err(|e| PushError::Persist(format!("{}: {e}", self.path.display())))
    }

    /// Applies a push. On a validation error the group (if any) records the
    /// failure time and nothing else changes.
    pub fn push(&self, grouping: Grouping, body: &str, method: Method) -> Result<(), PushError> {
        let k = key(&grouping);
        let mut groups = self.groups.lock();
        let parsed = parse_body(body, &grouping).and_then(|families| {
            for f in families.values().filter(|f| f.kind != "untyped") {
                for (other_key, g) in groups.iter().filter(|(other, _)| **other != k) {
                    if let Some(existing) = g.families.get(&f.name)
                        && existing.kind != "untyped"
                        && existing.kind != f.kind
                    {
                        return Err(format!(
                            "metric {} pushed as {} but already exists as {} in group {other_key}",
                            f.name, f.kind, existing.kind
                        ));
                    }
                }
            }
            Ok(families)
        });
        let families = match parsed {
            Ok(f) => f,
            Err(msg) => {
                if let Some(g) = groups.get_mut(&k) {
                    g.push_failure_time = now_secs();
                    self.persist(&groups)?;
                }
                return Err(PushError::BadRequest(msg));
            }
        };
        let mut next = groups.clone();
        let group = next.entry(k).or_insert_with(|| Group {
            grouping,
            families: BTreeMap::new(),
            push_time: 0.0,
            push_failure_time: 0.0,
        });
        match method {
            Method::Put => group.families = families,
            Method::Post => group.families.extend(families),
        }
        group.push_time = now_secs();
        // Acknowledge only what is on disk.
        self.persist(&next)?;
        *groups = next;
        Ok(())
    }

    /// Deletes a group; returns whether it existed.
    pub fn delete(&self, grouping: &Grouping) -> Result<bool, PushError> {
        let mut groups = self.groups.lock();
        let mut next = groups.clone();
        let existed = next.remove(&key(grouping)).is_some();
        if existed {
            self.persist(&next)?;
            *groups = next;
        }
        Ok(existed)
    }

    pub fn groups(&self) -> Vec<Group> {
        self.groups.lock().values().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g(job: &str) -> Grouping {
        Grouping::from([("job".into(), job.into())])
    }

    #[test]
    fn put_post_delete_and_persistence() {
        let tmp = tempfile::tempdir().unwrap();
        let store = PushStore::open(tmp.path()).unwrap();
        store
            .push(
                g("a"),
                "# TYPE x counter\nx_total 1\n# TYPE y gauge\ny 2\n",
                Method::Put,
            )
            .unwrap();
        store
            .push(g("a"), "# TYPE y gauge\ny 3\n", Method::Post)
            .unwrap();
        let groups = store.groups();
        assert_eq!(groups[0].families.len(), 2, "POST keeps x");
        assert_eq!(
            f64::from_bits(groups[0].families["y"].samples[0].value_bits),
            3.0
        );
        assert_eq!(
            groups[0].families["x"].samples[0]
                .labels
                .get("job")
                .unwrap(),
            "a"
        );
        store.push(g("a"), "y 4\n", Method::Put).unwrap();
        assert_eq!(
            store.groups()[0].families.len(),
            1,
            "PUT replaces the group"
        );
        drop(store);
        let store = PushStore::open(tmp.path()).unwrap();
        assert_eq!(store.groups().len(), 1, "persisted");
        assert!(store.delete(&g("a")).unwrap());
        assert!(PushStore::open(tmp.path()).unwrap().groups().is_empty());
    }

    #[test]
    fn rejections() {
        let tmp = tempfile::tempdir().unwrap();
        let store = PushStore::open(tmp.path()).unwrap();
        store
            .push(g("a"), "# TYPE m counter\nm 1\n", Method::Put)
            .unwrap();
        for (body, want) in [
            ("m 1 1000\n", "must not have timestamps"),
            ("# TYPE m gauge\nm 1\n", "already exists as counter"),
            ("z{job=\"other\"} 1\n", "conflicts with the grouping key"),
            ("z{ 1\n", "invalid push body: line 1"),
        ] {
            let err = store.push(g("b"), body, Method::Put).unwrap_err();
            assert!(err.to_string().contains(want), "{body:?}: {err}");
        }
        // A failed push to an existing group records the failure time and keeps its data.
        let err = store.push(g("a"), "m 1 5\n", Method::Put).unwrap_err();
        assert!(matches!(err, PushError::BadRequest(_)));
        let a = &store.groups()[0];
        assert!(a.push_failure_time > 0.0 && a.families.contains_key("m"));
    }
}
