//! Silences, with Alertmanager's rules: validation, pending → active →
//! expired by time, updates in place only when they do not rewrite history
//! (otherwise the old silence expires and a new one replaces it), expiring
//! by setting the end to now, and expired silences kept for five days.
//! Every change is written to `<data>/alerting/silences.json` before it is
//! acknowledged.

use std::collections::BTreeMap;
use std::path::PathBuf;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use super::matchers::{AlertMatcher, valid_label_name};
use super::state_file;
use crate::model::matcher::MatchOp;

/// How long expired silences are kept (Alertmanager's `--data.retention`).
pub const RETENTION_MS: i64 = 120 * 3600 * 1000;

#[derive(Debug, thiserror::Error)]
pub enum SilenceError {
    #[error("{0}")]
    Invalid(String),
    #[error("silence {0} not found")]
    NotFound(String),
    #[error("silence {0} already expired")]
    AlreadyExpired(String),
    #[error("cannot persist silences to {path}: {source}")]
    Persist {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// A matcher as the v2 API carries it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SilenceMatcher {
    pub name: String,
    pub value: String,
    pub is_regex: bool,
    #[serde(default = "yes")]
    pub is_equal: bool,
}

fn yes() -> bool {
    true
}

impl SilenceMatcher {
    fn compile(&self) -> Result<AlertMatcher, String> {
        let op = match (self.is_regex, self.is_equal) {
            (false, true) => MatchOp::Equal,
            (false, false) => MatchOp::NotEqual,
            (true, true) => MatchOp::RegexMatch,
            (true, false) => MatchOp::RegexNoMatch,
        };
        AlertMatcher::new(op, &self.name, &self.value)
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Silence {
    pub id: String,
    pub matchers: Vec<SilenceMatcher>,
    pub starts_at_ms: i64,
    pub ends_at_ms: i64,
    pub updated_at_ms: i64,
    pub created_by: String,
    pub comment: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SilenceState {
    Pending,
    Active,
    Expired,
}

impl SilenceState {
    pub fn as_str(self) -> &'static str {
        match self {
            SilenceState::Pending => "pending",
            SilenceState::Active => "active",
            SilenceState::Expired => "expired",
        }
    }
}

impl Silence {
    pub fn state(&self, now_ms: i64) -> SilenceState {
        if self.ends_at_ms <= now_ms {
            SilenceState::Expired
        } else if self.starts_at_ms > now_ms {
            SilenceState::Pending
        } else {
            SilenceState::Active
        }
    }

    /// The labels a `filter` is matched against: each matcher's name and
    /// value, as Alertmanager's API does.
    fn filter_labels(&self) -> BTreeMap<String, String> {
        self.matchers
            .iter()
            .map(|m| (m.name.clone(), m.value.clone()))
            .collect()
    }
}

/// A silence to create or update (`id` set).
#[derive(Clone, Debug)]
pub struct NewSilence {
    pub id: Option<String>,
    pub matchers: Vec<SilenceMatcher>,
    pub starts_at_ms: i64,
    pub ends_at_ms: i64,
    pub created_by: String,
    pub comment: String,
}

struct Entry {
    silence: Silence,
    matchers: Vec<AlertMatcher>,
}

pub struct Silences {
    path: PathBuf,
    entries: Mutex<BTreeMap<String, Entry>>,
}

fn compile_all(matchers: &[SilenceMatcher]) -> Result<Vec<AlertMatcher>, String> {
    matchers.iter().map(SilenceMatcher::compile).collect()
}

fn validate(s: &NewSilence) -> Result<Vec<AlertMatcher>, SilenceError> {
    let invalid = |m: String| SilenceError::Invalid(m);
    if s.matchers.is_empty() {
        return Err(invalid("at least one matcher required".into()));
    }
    for m in &s.matchers {
        if !valid_label_name(&m.name) {
            return Err(invalid(format!("invalid label name {:?}", m.name)));
        }
    }
    let compiled = compile_all(&s.matchers).map_err(invalid)?;
    if compiled.iter().all(|m| m.0.matches_empty()) {
        return Err(invalid(
            "at least one matcher must not match the empty string".into(),
        ));
    }
    if s.starts_at_ms == 0 || s.ends_at_ms == 0 {
        return Err(invalid("start and end time must be set".into()));
    }
    if s.ends_at_ms < s.starts_at_ms {
        return Err(invalid("end time must not be before start time".into()));
    }
    if s.created_by.is_empty() {
        return Err(invalid("creator information missing".into()));
    }
    if s.comment.is_empty() {
        return Err(invalid("comment missing".into()));
    }
    Ok(compiled)
}

impl Silences {
    /// Loads the silences file under `dir`.
    pub fn open(dir: &std::path::Path) -> Result<Silences, SilenceError> {
        let path = dir.join("silences.json");
        let list: Vec<Silence> =
            state_file::load(&path).map_err(|source| SilenceError::Persist {
                path: path.display().to_string(),
                source,
            })?;
        let mut entries = BTreeMap::new();
        for silence in list {
            match compile_all(&silence.matchers) {
                Ok(matchers) => {
                    entries.insert(silence.id.clone(), Entry { silence, matchers });
                }
                Err(e) => {
                    tracing::warn!(silence = %silence.id, err = %e, "Dropping a stored silence with an invalid matcher")
                }
            }
        }
        Ok(Silences {
            path,
            entries: Mutex::new(entries),
        })
    }

    fn persist(&self, entries: &BTreeMap<String, Entry>) -> Result<(), SilenceError> {
        let list: Vec<&Silence> = entries.values().map(|e| &e.silence).collect();
        state_file::store(&self.path, &list).map_err(|source| SilenceError::Persist {
            path: self.path.display().to_string(),
            source,
        })
    }

    /// Creates a silence, or updates the one named by `id`; returns the id
    /// in force afterwards (a new one when the update cannot be in place).
    pub fn set(&self, new: NewSilence, now_ms: i64) -> Result<String, SilenceError> {
        let compiled = validate(&new)?;
        let mut entries = self.entries.lock();
        let mut starts_at_ms = new.starts_at_ms;
        if let Some(id) = &new.id {
            let prev = entries
                .get(id)
                .ok_or_else(|| SilenceError::NotFound(id.clone()))?;
            if can_update_in_place(&prev.silence, &new, now_ms) {
                let silence = Silence {
                    id: id.clone(),
                    matchers: new.matchers,
                    starts_at_ms: new.starts_at_ms,
                    ends_at_ms: new.ends_at_ms,
                    updated_at_ms: now_ms,
                    created_by: new.created_by,
                    comment: new.comment,
                };
                entries.insert(
                    id.clone(),
                    Entry {
                        silence,
                        matchers: compiled,
                    },
                );
                self.persist(&entries)?;
                return Ok(id.clone());
            }
            // Replaced: the old silence ends now, a new one takes over.
            if prev.silence.state(now_ms) != SilenceState::Expired
                && let Some(e) = entries.get_mut(id)
            {
                expire_entry(e, now_ms);
            }
        }
        if new.ends_at_ms <= now_ms {
            return Err(SilenceError::Invalid(
                "end time can't be in the past".into(),
            ));
        }
        if starts_at_ms < now_ms {
            starts_at_ms = now_ms;
        }
        let id = uuid::Uuid::new_v4().to_string();
        entries.insert(
            id.clone(),
            Entry {
                silence: Silence {
                    id: id.clone(),
                    matchers: new.matchers,
                    starts_at_ms,
                    ends_at_ms: new.ends_at_ms,
                    updated_at_ms: now_ms,
                    created_by: new.created_by,
                    comment: new.comment,
                },
                matchers: compiled,
            },
        );
        self.persist(&entries)?;
        Ok(id)
    }

    /// Ends a silence now (a pending one never starts).
    pub fn expire(&self, id: &str, now_ms: i64) -> Result<(), SilenceError> {
        let mut entries = self.entries.lock();
        let e = entries
            .get_mut(id)
            .ok_or_else(|| SilenceError::NotFound(id.to_owned()))?;
        if e.silence.state(now_ms) == SilenceState::Expired {
            return Err(SilenceError::AlreadyExpired(id.to_owned()));
        }
        expire_entry(e, now_ms);
        self.persist(&entries)
    }

    pub fn get(&self, id: &str) -> Option<Silence> {
        self.entries.lock().get(id).map(|e| e.silence.clone())
    }

    /// Silences whose matchers (as labels) match every filter matcher.
    pub fn list(&self, filter: &[AlertMatcher]) -> Vec<Silence> {
        self.entries
            .lock()
            .values()
            .filter(|e| {
                let l = e.silence.filter_labels();
                filter.iter().all(|m| m.matches(&l))
            })
            .map(|e| e.silence.clone())
            .collect()
    }

    /// Ids of the active silences that match `labels`.
    pub fn silenced_by(&self, labels: &BTreeMap<String, String>, now_ms: i64) -> Vec<String> {
        self.entries
            .lock()
            .values()
            .filter(|e| {
                e.silence.state(now_ms) == SilenceState::Active
                    && e.matchers.iter().all(|m| m.matches(labels))
            })
            .map(|e| e.silence.id.clone())
            .collect()
    }

    /// Counts per state, for metrics.
    pub fn counts(&self, now_ms: i64) -> [(SilenceState, usize); 3] {
        let mut c = [
            (SilenceState::Active, 0),
            (SilenceState::Pending, 0),
            (SilenceState::Expired, 0),
        ];
        for e in self.entries.lock().values() {
            let s = e.silence.state(now_ms);
            if let Some(slot) = c.iter_mut().find(|(st, _)| *st == s) {
                slot.1 += 1;
            }
        }
        c
    }

    /// Forgets silences expired longer than the retention ago.
    pub fn gc(&self, now_ms: i64) -> Result<usize, SilenceError> {
        let mut entries = self.entries.lock();
        let before = entries.len();
        entries.retain(|_, e| e.silence.ends_at_ms + RETENTION_MS > now_ms);
        let removed = before - entries.len();
        if removed > 0 {
            self.persist(&entries)?;
        }
        Ok(removed)
    }
}

fn expire_entry(e: &mut Entry, now_ms: i64) {
    if e.silence.starts_at_ms > now_ms {
        e.silence.starts_at_ms = now_ms;
    }
    e.silence.ends_at_ms = now_ms;
    e.silence.updated_at_ms = now_ms;
}

/// Alertmanager's `canUpdate`: same matchers, and no change to what has
/// already happened.
fn can_update_in_place(prev: &Silence, new: &NewSilence, now_ms: i64) -> bool {
    if prev.matchers != new.matchers {
        return false;
    }
    match prev.state(now_ms) {
        SilenceState::Expired => false,
        SilenceState::Pending => new.starts_at_ms >= now_ms,
        SilenceState::Active => new.starts_at_ms == prev.starts_at_ms && new.ends_at_ms >= now_ms,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(name: &str, value: &str, is_regex: bool) -> SilenceMatcher {
        SilenceMatcher {
            name: name.into(),
            value: value.into(),
            is_regex,
            is_equal: true,
        }
    }

    fn new(matchers: Vec<SilenceMatcher>, start: i64, end: i64) -> NewSilence {
        NewSilence {
            id: None,
            matchers,
            starts_at_ms: start,
            ends_at_ms: end,
            created_by: "me".into(),
            comment: "maintenance".into(),
        }
    }

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn lifecycle_and_persistence() {
        let dir = tempfile::tempdir().unwrap();
        let s = Silences::open(dir.path()).unwrap();
        let id = s
            .set(new(vec![m("alertname", "Foo", false)], 500, 10_000), 1_000)
            .unwrap();
        let got = s.get(&id).unwrap();
        // A start in the past becomes now.
        assert_eq!(got.starts_at_ms, 1_000);
        assert_eq!(
            s.silenced_by(&labels(&[("alertname", "Foo")]), 2_000),
            std::slice::from_ref(&id)
        );
        assert!(
            s.silenced_by(&labels(&[("alertname", "Bar")]), 2_000)
                .is_empty()
        );
        let reopened = Silences::open(dir.path()).unwrap();
        assert_eq!(reopened.get(&id), Some(got));
        s.expire(&id, 3_000).unwrap();
        assert_eq!(s.get(&id).unwrap().state(3_000), SilenceState::Expired);
        assert!(matches!(
            s.expire(&id, 3_001),
            Err(SilenceError::AlreadyExpired(_))
        ));
        assert!(
            s.silenced_by(&labels(&[("alertname", "Foo")]), 3_000)
                .is_empty()
        );
        assert_eq!(
            Silences::open(dir.path())
                .unwrap()
                .get(&id)
                .unwrap()
                .ends_at_ms,
            3_000
        );
        assert_eq!(s.gc(3_000 + RETENTION_MS).unwrap(), 1);
        assert!(s.get(&id).is_none());
    }

    #[test]
    fn updates_in_place_or_replace() {
        let dir = tempfile::tempdir().unwrap();
        let s = Silences::open(dir.path()).unwrap();
        let id = s
            .set(new(vec![m("a", "1", false)], 1_000, 10_000), 1_000)
            .unwrap();
        // Extending an active silence keeps its id.
        let mut upd = new(vec![m("a", "1", false)], 1_000, 20_000);
        upd.id = Some(id.clone());
        assert_eq!(s.set(upd, 2_000).unwrap(), id);
        assert_eq!(s.get(&id).unwrap().ends_at_ms, 20_000);
        // Changing the matchers replaces it.
        let mut upd = new(vec![m("a", "2", false)], 1_000, 20_000);
        upd.id = Some(id.clone());
        let id2 = s.set(upd, 3_000).unwrap();
        assert_ne!(id2, id);
        assert_eq!(s.get(&id).unwrap().state(3_000), SilenceState::Expired);
        let mut unknown = new(vec![m("a", "1", false)], 1_000, 20_000);
        unknown.id = Some("nope".into());
        assert!(matches!(
            s.set(unknown, 3_000),
            Err(SilenceError::NotFound(_))
        ));
    }

    #[test]
    fn validation() {
        let dir = tempfile::tempdir().unwrap();
        let s = Silences::open(dir.path()).unwrap();
        let err = |n: NewSilence| s.set(n, 1_000).unwrap_err().to_string();
        assert!(err(new(vec![], 1_000, 2_000)).contains("at least one matcher"));
        assert!(err(new(vec![m("a", ".*", true)], 1_000, 2_000)).contains("empty string"));
        assert!(err(new(vec![m("a", "(", true)], 1_000, 2_000)).contains("regular expression"));
        assert!(err(new(vec![m("a", "1", false)], 3_000, 2_000)).contains("before start"));
        assert!(err(new(vec![m("a", "1", false)], 100, 500)).contains("in the past"));
        let mut no_comment = new(vec![m("a", "1", false)], 1_000, 2_000);
        no_comment.comment.clear();
        assert!(err(no_comment).contains("comment"));
    }

    #[test]
    fn filters_match_silence_matchers() {
        let dir = tempfile::tempdir().unwrap();
        let s = Silences::open(dir.path()).unwrap();
        s.set(new(vec![m("alertname", "Foo", false)], 1_000, 9_000), 1_000)
            .unwrap();
        s.set(new(vec![m("alertname", "Bar", false)], 1_000, 9_000), 1_000)
            .unwrap();
        let f = crate::alerting::matchers::parse_matchers("alertname=Foo").unwrap();
        assert_eq!(s.list(&f).len(), 1);
        assert_eq!(s.list(&[]).len(), 2);
    }
}
