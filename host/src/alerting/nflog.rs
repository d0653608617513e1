//! The notification log: per group, receiver and integration, which alerts
//! were last delivered as firing and as resolved, and when. It decides
//! whether a flush needs a notification (Alertmanager's dedup stage) and is
//! written to `<data>/alerting/nflog.json` after each delivery, so a
//! restart does not notify everything again.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use super::state_file;

/// How long an entry is kept after its last notification.
pub const RETENTION_MS: i64 = 120 * 3600 * 1000;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub group_key: String,
    pub receiver: String,
    pub integration: usize,
    pub firing: BTreeSet<u64>,
    pub resolved: BTreeSet<u64>,
    pub timestamp_ms: i64,
}

impl Entry {
    fn key(&self) -> String {
        entry_key(&self.group_key, &self.receiver, self.integration)
    }
}

fn entry_key(group_key: &str, receiver: &str, integration: usize) -> String {
    format!("{group_key}\u{0}{receiver}\u{0}{integration}")
}

pub struct NotificationLog {
    path: PathBuf,
    entries: Mutex<BTreeMap<String, Entry>>,
}

impl NotificationLog {
    pub fn open(dir: &std::path::Path) -> std::io::Result<NotificationLog> {
        let path = dir.join("nflog.json");
        let list: Vec<Entry> = state_file::load(&path)?;
        Ok(NotificationLog {
            path,
            entries: Mutex::new(list.into_iter().map(|e| (e.key(), e)).collect()),
        })
    }

    pub fn get(&self, group_key: &str, receiver: &str, integration: usize) -> Option<Entry> {
        self.entries
            .lock()
            .get(&entry_key(group_key, receiver, integration))
            .cloned()
    }

    /// Records a delivery (or a decision that nothing needed sending) and
    /// writes the log.
    pub fn log(&self, entry: Entry) -> std::io::Result<()> {
        let mut entries = self.entries.lock();
        entries.insert(entry.key(), entry);
        let list: Vec<&Entry> = entries.values().collect();
        state_file::store(&self.path, &list)
    }

    /// Forgets entries older than the retention.
    pub fn gc(&self, now_ms: i64) -> std::io::Result<()> {
        let mut entries = self.entries.lock();
        let before = entries.len();
        entries.retain(|_, e| e.timestamp_ms + RETENTION_MS > now_ms);
        if entries.len() != before {
            let list: Vec<&Entry> = entries.values().collect();
            state_file::store(&self.path, &list)?;
        }
        Ok(())
    }
}

/// Alertmanager's dedup decision: notify when there is something new to
/// say, or when the repeat interval has passed.
pub fn needs_update(
    entry: Option<&Entry>,
    firing: &BTreeSet<u64>,
    resolved: &BTreeSet<u64>,
    send_resolved: bool,
    repeat_interval_ms: i64,
    now_ms: i64,
) -> bool {
    let Some(entry) = entry else {
        // Never notified: only firing alerts are worth a first message.
        return !firing.is_empty();
    };
    if !firing.is_subset(&entry.firing) {
        return true;
    }
    if firing.is_empty() {
        // Everything resolved: notify (whatever send_resolved says, so the
        // log forgets the firing alerts), unless the receiver never heard
        // of them.
        return !entry.firing.is_empty();
    }
    if send_resolved && !resolved.is_subset(&entry.resolved) {
        return true;
    }
    entry.timestamp_ms + repeat_interval_ms <= now_ms
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(v: &[u64]) -> BTreeSet<u64> {
        v.iter().copied().collect()
    }

    fn entry(firing: &[u64], resolved: &[u64], ts: i64) -> Entry {
        Entry {
            group_key: "{}:{}".into(),
            receiver: "r".into(),
            integration: 0,
            firing: set(firing),
            resolved: set(resolved),
            timestamp_ms: ts,
        }
    }

    #[test]
    fn dedup_rules() {
        let hour = 3_600_000;
        // First notification only with something firing.
        assert!(needs_update(None, &set(&[1]), &set(&[]), true, hour, 0));
        assert!(!needs_update(None, &set(&[]), &set(&[1]), true, hour, 0));
        let e = entry(&[1, 2], &[], 0);
        // Same or fewer firing alerts: quiet until the repeat interval.
        assert!(!needs_update(
            Some(&e),
            &set(&[1, 2]),
            &set(&[]),
            true,
            hour,
            10
        ));
        assert!(needs_update(
            Some(&e),
            &set(&[1, 2]),
            &set(&[]),
            true,
            hour,
            hour
        ));
        // A new firing alert: notify.
        assert!(needs_update(
            Some(&e),
            &set(&[1, 2, 3]),
            &set(&[]),
            true,
            hour,
            10
        ));
        // One resolved: only with send_resolved.
        assert!(needs_update(
            Some(&e),
            &set(&[1]),
            &set(&[2]),
            true,
            hour,
            10
        ));
        assert!(!needs_update(
            Some(&e),
            &set(&[1]),
            &set(&[2]),
            false,
            hour,
            10
        ));
        // All resolved: always, so the log is cleared.
        assert!(needs_update(
            Some(&e),
            &set(&[]),
            &set(&[1, 2]),
            false,
            hour,
            10
        ));
        let cleared = entry(&[], &[1, 2], 10);
        assert!(!needs_update(
            Some(&cleared),
            &set(&[]),
            &set(&[1, 2]),
            true,
            hour,
            20
        ));
    }

    #[test]
    fn survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let log = NotificationLog::open(dir.path()).unwrap();
        log.log(entry(&[u64::MAX, 7], &[], 5)).unwrap();
        let again = NotificationLog::open(dir.path()).unwrap();
        assert_eq!(
            again.get("{}:{}", "r", 0),
            Some(entry(&[u64::MAX, 7], &[], 5))
        );
        again.gc(5 + RETENTION_MS).unwrap();
        assert!(
            NotificationLog::open(dir.path())
                .unwrap()
                .get("{}:{}", "r", 0)
                .is_none()
        );
    }
}
