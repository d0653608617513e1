//! How far a remote has got through the WAL, and keeping that on disk.
//!
//! Shards finish batches out of order, so the durable position is the end
//! of the last WAL record whose samples *and all earlier ones* were
//! accepted (or dropped for good). After a restart the queue re-reads from
//! there. Samples past that point that the remote had already accepted are
//! remembered per series (newest timestamp) and skipped when re-read: a
//! receiver such as Prometheus rejects a whole request that repeats an older
//! sample of a series it has newer data for.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// A byte offset in a WAL segment; records end at positions.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Position {
    pub segment: u32,
    pub offset: u64,
}

/// The progress file's content.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    pub position: Position,
    /// `(series id, newest accepted timestamp)` for series with samples
    /// accepted past `position`.
    #[serde(default)]
    pub accepted_after: Vec<(u64, i64)>,
    /// How far the WAL had been read: `accepted_after` means nothing past it.
    #[serde(default)]
    pub read_upto: Position,
}

#[derive(Debug, thiserror::Error)]
pub enum ProgressError {
    #[error("remote-write progress {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("remote-write progress {}: {source}", path.display())]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

/// Reads a progress file; `Ok(None)` when there is none yet.
pub fn load(path: &Path) -> Result<Option<Progress>, ProgressError> {
    let text = match std::fs::read(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(ProgressError::Io {
                path: path.to_owned(),
                source,
            });
        }
    };
    serde_json::from_slice(&text)
        .map(Some)
        .map_err(|source| ProgressError::Parse {
            path: path.to_owned(),
            source,
        })
}

/// Writes a progress file atomically: a temporary file renamed over it, so
/// a crash leaves the old or the new content, never a mix.
pub fn save(path: &Path, progress: &Progress) -> Result<(), ProgressError> {
    let io = |source| ProgressError::Io {
        path: path.to_owned(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let tmp = path.with_extension("json.tmp");
    let body = serde_json::to_vec(progress).map_err(|source| ProgressError::Parse {
        path: path.to_owned(),
        source,
    })?;
    std::fs::write(&tmp, body).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

/// One WAL record in flight: where it ends and how many of its samples are
/// still queued or being sent.
#[derive(Debug)]
struct InFlight {
    end: Position,
    remaining: u64,
}

/// Advances the committed position as batches are acknowledged.
/// Records get consecutive sequence numbers in WAL order.
#[derive(Debug)]
pub struct AckTracker {
    /// Sequence number of `in_flight[0]`.
    base: u64,
    in_flight: VecDeque<InFlight>,
    committed: Position,
    /// Series id → (newest accepted timestamp, sequence number of its record).
    accepted: HashMap<u64, (i64, u64)>,
}

impl AckTracker {
    pub fn new(start: Position) -> AckTracker {
        AckTracker {
            base: 0,
            in_flight: VecDeque::new(),
            committed: start,
            accepted: HashMap::new(),
        }
    }

    /// A record ending at `end` with `samples` samples queued; returns its
    /// sequence number, which those samples carry.
    pub fn register(&mut self, end: Position, samples: u64) -> u64 {
        let seq = self.base + self.in_flight.len() as u64;
        self.in_flight.push_back(InFlight {
            end,
            remaining: samples,
        });
        self.advance();
        seq
    }

    /// `n` samples of record `seq` are done with (accepted or dropped).
    pub fn ack(&mut self, seq: u64, n: u64) {
        if let Some(idx) = seq.checked_sub(self.base)
            && let Some(r) = self.in_flight.get_mut(idx as usize)
        {
            r.remaining = r.remaining.saturating_sub(n);
        }
        self.advance();
    }

    /// The remote accepted a sample of `series` at `t` from record `seq`.
    pub fn accepted(&mut self, series: u64, t: i64, seq: u64) {
        let e = self.accepted.entry(series).or_insert((t, seq));
        if t >= e.0 {
            *e = (t, seq);
        }
    }

    fn advance(&mut self) {
        while let Some(front) = self.in_flight.front() {
            if front.remaining > 0 {
                break;
            }
            self.committed = front.end;
            self.in_flight.pop_front();
            self.base += 1;
        }
    }

    pub fn committed(&self) -> Position {
        self.committed
    }

    /// What to persist now; forgets accepted timestamps the committed
    /// position has passed.
    pub fn snapshot(&mut self, read_upto: Position) -> Progress {
        let base = self.base;
        self.accepted.retain(|_, (_, seq)| *seq >= base);
        let mut accepted_after: Vec<(u64, i64)> =
            self.accepted.iter().map(|(id, (t, _))| (*id, *t)).collect();
        accepted_after.sort_unstable();
        Progress {
            position: self.committed,
            accepted_after,
            read_upto,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pos(segment: u32, offset: u64) -> Position {
        Position { segment, offset }
    }

    #[test]
    fn commits_only_a_contiguous_prefix() {
        let mut t = AckTracker::new(pos(0, 0));
        let a = t.register(pos(0, 10), 2);
        let b = t.register(pos(0, 20), 1);
        let c = t.register(pos(1, 5), 3);
        // A later record finishing first does not move the position.
        t.ack(c, 3);
        assert_eq!(t.committed(), pos(0, 0));
        t.ack(a, 1);
        assert_eq!(t.committed(), pos(0, 0));
        t.ack(a, 1);
        assert_eq!(t.committed(), pos(0, 10));
        t.ack(b, 1);
        // b done, and c was already done: both commit.
        assert_eq!(t.committed(), pos(1, 5));
    }

    #[test]
    fn records_without_samples_commit_when_reached() {
        let mut t = AckTracker::new(pos(3, 0));
        t.register(pos(3, 7), 0);
        assert_eq!(t.committed(), pos(3, 7));
        let s = t.register(pos(3, 9), 1);
        t.register(pos(3, 12), 0);
        assert_eq!(t.committed(), pos(3, 7));
        t.ack(s, 1);
        assert_eq!(t.committed(), pos(3, 12));
    }

    #[test]
    fn snapshot_keeps_accepted_samples_past_the_position() {
        let mut t = AckTracker::new(pos(0, 0));
        let a = t.register(pos(0, 10), 1);
        let b = t.register(pos(0, 20), 1);
        t.ack(b, 1);
        t.accepted(42, 1000, b);
        let p = t.snapshot(pos(9, 9));
        assert_eq!(p.position, pos(0, 0));
        assert_eq!(p.accepted_after, vec![(42, 1000)]);
        t.ack(a, 1);
        let p = t.snapshot(pos(9, 9));
        assert_eq!(p.position, pos(0, 20));
        assert!(p.accepted_after.is_empty());
    }

    #[test]
    fn progress_file_round_trips_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("queues").join("r.json");
        assert_eq!(load(&path).unwrap(), None);
        let p = Progress {
            position: pos(4, 1234),
            accepted_after: vec![(1, 2), (u64::MAX, -5)],
            read_upto: pos(5, 0),
        };
        save(&path, &p).unwrap();
        assert_eq!(load(&path).unwrap(), Some(p));
        assert!(!path.with_extension("json.tmp").exists());
        std::fs::write(&path, "{").unwrap();
        let err = load(&path).unwrap_err().to_string();
        assert!(err.contains("r.json"), "{err}");
    }
}
