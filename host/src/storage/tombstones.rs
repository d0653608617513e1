//! Deletions (`/api/v1/admin/tsdb/delete_series`): a tombstone is a set of
//! label matchers and a closed time interval. Tombstones live in
//! `<data>/tombstones.json` (written to a temporary file, synced, renamed),
//! every read through [`super::Storage::select`] leaves their samples out,
//! and every block written (head cut, compaction, `clean_tombstones`)
//! drops those samples for good.
//!
//! Unlike Prometheus, which records deleted intervals per existing series,
//! a tombstone here is kept as matchers, so it also hides samples that a
//! backfill adds later to the deleted interval of a matching series. The
//! file stays small and needs no series ids; `clean_tombstones` removes
//! tombstones once no head data can fall inside them any more.

use std::path::{Path, PathBuf};

use parking_lot::RwLock;
use serde::{Deserialize, Serialize};

use super::{SeriesSamples, StorageError};
use crate::model::{Labels, MatchOp, Matcher};

pub const TOMBSTONES_FILE: &str = "tombstones.json";

#[derive(Clone, Debug)]
pub struct Tombstone {
    pub matchers: Vec<Matcher>,
    /// Inclusive bounds in milliseconds.
    pub mint: i64,
    pub maxt: i64,
}

impl Tombstone {
    fn covers(&self, labels: &Labels) -> bool {
        self.matchers
            .iter()
            .all(|m| m.matches(labels.get(&m.name).unwrap_or("")))
    }
}

#[derive(Serialize, Deserialize)]
struct StoredMatcher {
    name: String,
    op: String,
    value: String,
}

#[derive(Serialize, Deserialize)]
struct StoredTombstone {
    matchers: Vec<StoredMatcher>,
    mint: i64,
    maxt: i64,
}

pub struct Tombstones {
    path: PathBuf,
    list: RwLock<Vec<Tombstone>>,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StorageError + '_ {
    move |source| StorageError::Io {
        path: path.to_owned(),
        source,
    }
}

fn parse_op(op: &str) -> Option<MatchOp> {
    Some(match op {
        "=" => MatchOp::Equal,
        "!=" => MatchOp::NotEqual,
        "=~" => MatchOp::RegexMatch,
        "!~" => MatchOp::RegexNoMatch,
        _ => return None,
    })
}

impl Tombstones {
    /// Loads `<dir>/tombstones.json` if it exists.
    pub fn open(dir: &Path) -> Result<Tombstones, StorageError> {
        let path = dir.join(TOMBSTONES_FILE);
        let list = match std::fs::read(&path) {
            Ok(bytes) => {
                let invalid = |msg: String| StorageError::Io {
                    path: path.clone(),
                    source: std::io::Error::new(std::io::ErrorKind::InvalidData, msg),
                };
                let stored: Vec<StoredTombstone> =
                    serde_json::from_slice(&bytes).map_err(|e| invalid(e.to_string()))?;
                let mut list = Vec::with_capacity(stored.len());
                for t in stored {
                    let mut matchers = Vec::with_capacity(t.matchers.len());
                    for m in t.matchers {
                        let op = parse_op(&m.op)
                            .ok_or_else(|| invalid(format!("unknown matcher op {:?}", m.op)))?;
                        matchers.push(
                            Matcher::new(op, m.name, m.value)
                                .map_err(|e| invalid(e.to_string()))?,
                        );
                    }
                    list.push(Tombstone {
                        matchers,
                        mint: t.mint,
                        maxt: t.maxt,
                    });
                }
                list
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(io(&path)(e)),
        };
        Ok(Tombstones {
            path,
            list: RwLock::new(list),
        })
    }

    pub fn is_empty(&self) -> bool {
        self.list.read().is_empty()
    }

    pub fn all(&self) -> Vec<Tombstone> {
        self.list.read().clone()
    }

    /// Adds tombstones and persists the list before returning.
    pub fn add(&self, new: Vec<Tombstone>) -> Result<(), StorageError> {
        let mut list = self.list.write();
        let mut next = list.clone();
        next.extend(new);
        self.persist(&next)?;
        *list = next;
        Ok(())
    }

    /// Keeps only the tombstones `keep` accepts, and persists the list.
    pub fn retain(&self, keep: impl Fn(&Tombstone) -> bool) -> Result<(), StorageError> {
        let mut list = self.list.write();
        let next: Vec<Tombstone> = list.iter().filter(|t| keep(t)).cloned().collect();
        if next.len() != list.len() {
            self.persist(&next)?;
            *list = next;
        }
        Ok(())
    }

    fn persist(&self, list: &[Tombstone]) -> Result<(), StorageError> {
        if list.is_empty() {
            return match std::fs::remove_file(&self.path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io(&self.path)(e)),
                _ => Ok(()),
            };
        }
        let stored: Vec<StoredTombstone> = list
            .iter()
            .map(|t| StoredTombstone {
                matchers: t
                    .matchers
                    .iter()
                    .map(|m| StoredMatcher {
                        name: m.name.clone(),
                        op: m.op.to_string(),
                        value: m.value.clone(),
                    })
                    .collect(),
                mint: t.mint,
                maxt: t.maxt,
            })
            .collect();
        let bytes = serde_json::to_vec_pretty(&stored).map_err(|e| StorageError::Io {
            path: self.path.clone(),
            source: std::io::Error::other(e),
        })?;
        let tmp = self.path.with_extension("json.tmp");
        {
            use std::io::Write;
            let mut f = std::fs::File::create(&tmp).map_err(io(&tmp))?;
            f.write_all(&bytes).map_err(io(&tmp))?;
            f.sync_all().map_err(io(&tmp))?;
        }
        std::fs::rename(&tmp, &self.path).map_err(io(&self.path))?;
        Ok(())
    }

    /// Removes deleted samples; series left without samples are dropped.
    /// Returns whether anything was removed.
    pub fn apply(&self, series: &mut Vec<SeriesSamples>) -> bool {
        let list = self.list.read();
        apply_list(&list, series)
    }

    /// Whether any tombstone's interval overlaps `[mint, maxt]`.
    pub fn overlaps(&self, mint: i64, maxt: i64) -> bool {
        self.list
            .read()
            .iter()
            .any(|t| t.mint <= maxt && mint <= t.maxt)
    }
}

fn apply_list(list: &[Tombstone], series: &mut Vec<SeriesSamples>) -> bool {
    if list.is_empty() {
        return false;
    }
    let mut changed = false;
    for s in series.iter_mut() {
        let hits: Vec<&Tombstone> = list.iter().filter(|t| t.covers(&s.labels)).collect();
        if hits.is_empty() {
            continue;
        }
        let before = s.samples.len();
        s.samples
            .retain(|x| !hits.iter().any(|t| t.mint <= x.t && x.t <= t.maxt));
        changed |= s.samples.len() != before;
        let before = s.histograms.len();
        s.histograms
            .retain(|x| !hits.iter().any(|t| t.mint <= x.t && x.t <= t.maxt));
        changed |= s.histograms.len() != before;
    }
    series.retain(|s| !s.is_empty());
    changed
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Sample;

    #[test]
    fn persisted_and_applied() {
        let dir = tempfile::tempdir().unwrap();
        let t = Tombstones::open(dir.path()).unwrap();
        assert!(t.is_empty());
        t.add(vec![Tombstone {
            matchers: vec![
                Matcher::eq("__name__", "m"),
                Matcher::new(MatchOp::RegexMatch, "job", "a|b").unwrap(),
            ],
            mint: 10,
            maxt: 20,
        }])
        .unwrap();
        let t = Tombstones::open(dir.path()).unwrap();
        let series = |job: &str| SeriesSamples {
            id: 0,
            labels: Labels::from_pairs([("__name__", "m"), ("job", job)]).unwrap(),
            samples: (0..4).map(|i| Sample { t: i * 10, v: 1.0 }).collect(),
            histograms: Vec::new(),
        };
        let mut s = vec![series("a"), series("c")];
        assert!(t.apply(&mut s));
        let ts: Vec<i64> = s[0].samples.iter().map(|x| x.t).collect();
        assert_eq!(ts, [0, 30]);
        assert_eq!(s[1].samples.len(), 4);
        t.retain(|_| false).unwrap();
        assert!(!dir.path().join(TOMBSTONES_FILE).exists());
    }
}
