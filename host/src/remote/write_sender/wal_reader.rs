//! Follows the WAL as the server writes it: reads records from a position
//! on, moves to the next segment when one is started, and notices
//! checkpoints (which carry the series of segments they replaced) and
//! segments deleted before they were read.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use super::progress::Position;
use crate::model::Labels;
use crate::storage::wal::{self, Frame, FrameError, Record, WalError};

/// What [`WalReader::next`] found.
#[derive(Debug)]
pub enum Step {
    /// A record, and the position right after it.
    Record(Record, Position),
    /// A record this build does not understand (a newer record type); skipped.
    Skipped(Position),
    /// Segments `from..to` were deleted (checkpointed) before they were read.
    Lost { from: u32, to: u32 },
    /// A damaged segment whose rest was skipped.
    Damaged { segment: u32, reason: String },
    /// Nothing new yet.
    Idle,
}

pub struct WalReader {
    dir: PathBuf,
    pos: Position,
    file: Option<File>,
    /// Bytes read from the file at `pos` that do not form a whole frame yet.
    buf: Vec<u8>,
    /// Reused read buffer.
    chunk: Vec<u8>,
}

/// Reads every frame of a file, calling `f` with each record.
fn read_file_records(path: &Path, f: &mut impl FnMut(Record)) -> Result<(), WalError> {
    let data = std::fs::read(path).map_err(|source| WalError::Io {
        path: path.to_owned(),
        source,
    })?;
    let mut off = 0;
    while off < data.len() {
        match wal::next_frame(&data[off..]) {
            Ok((Frame::Record(r), used)) => {
                f(r);
                off += used;
            }
            Ok((Frame::Unknown(_), used)) => off += used,
            Err(_) => break,
        }
    }
    Ok(())
}

/// Series ids and their labels, as series records log them.
pub type SeriesList = Vec<(u64, Labels)>;

/// The series logged in the newest checkpoint, and its number.
pub fn checkpoint_series(dir: &Path) -> Result<Option<(u32, SeriesList)>, WalError> {
    let Some((n, cp)) = wal::newest_checkpoint(dir)? else {
        return Ok(None);
    };
    let mut out = Vec::new();
    // The checkpoint can be replaced while it is read; what was read is
    // still a valid set of series.
    if let Ok(segments) = wal::list_segments(&cp) {
        for s in segments {
            let _ = read_file_records(&wal::segment_path(&cp, s), &mut |r| {
                if let Record::Series(series) = r {
                    out.extend(series);
                }
            });
        }
    }
    Ok(Some((n, out)))
}

/// Series logged in segments before `upto` (and in the part of
/// `upto.segment` before its offset), oldest first.
pub fn series_before(dir: &Path, upto: Position) -> Result<SeriesList, WalError> {
    let mut out = Vec::new();
    for s in wal::list_segments(dir)? {
        if s > upto.segment {
            break;
        }
        let path = wal::segment_path(dir, s);
        let Ok(data) = std::fs::read(&path) else {
            continue;
        };
        let end = if s == upto.segment {
            (upto.offset as usize).min(data.len())
        } else {
            data.len()
        };
        let mut off = 0;
        while off < end {
            match wal::next_frame(&data[off..end]) {
                Ok((Frame::Record(Record::Series(series)), used)) => {
                    out.extend(series);
                    off += used;
                }
                Ok((_, used)) => off += used,
                Err(_) => break,
            }
        }
    }
    Ok(out)
}

/// Where a new follower starts: the end of the newest segment.
pub fn end_of_wal(dir: &Path) -> Result<Position, WalError> {
    let Some(&segment) = wal::list_segments(dir)?.last() else {
        return Ok(Position::default());
    };
    let path = wal::segment_path(dir, segment);
    let offset = std::fs::metadata(&path)
        .map_err(|source| WalError::Io { path, source })?
        .len();
    Ok(Position { segment, offset })
}

impl WalReader {
    pub fn new(dir: &Path, start: Position) -> WalReader {
        WalReader {
            dir: dir.to_owned(),
            pos: start,
            file: None,
            buf: Vec::new(),
            chunk: vec![0; 1 << 20],
        }
    }

    /// The position of the next record to read.
    pub fn position(&self) -> Position {
        self.pos
    }

    fn later_segment(&self) -> Result<Option<u32>, WalError> {
        Ok(wal::list_segments(&self.dir)?
            .into_iter()
            .find(|s| *s > self.pos.segment))
    }

    fn move_to(&mut self, segment: u32) {
        self.pos = Position { segment, offset: 0 };
        self.file = None;
        self.buf.clear();
    }

    /// Reads what the file has past the buffered bytes; false when nothing.
    fn fill(&mut self) -> Result<bool, WalError> {
        let path = wal::segment_path(&self.dir, self.pos.segment);
        let io = |source| WalError::Io {
            path: path.clone(),
            source,
        };
        let file = match &mut self.file {
            Some(f) => f,
            None => {
                let mut f = File::open(&path).map_err(io)?;
                let len = f.metadata().map_err(io)?.len();
                // Replay may have cut a torn tail the position pointed into.
                self.pos.offset = self.pos.offset.min(len);
                f.seek(SeekFrom::Start(self.pos.offset)).map_err(io)?;
                self.file.insert(f)
            }
        };
        let n = file.read(&mut self.chunk).map_err(io)?;
        self.buf.extend_from_slice(&self.chunk[..n]);
        Ok(n > 0)
    }

    /// The next record, or why there is none.
    pub fn step(&mut self) -> Result<Step, WalError> {
        loop {
            if !self.buf.is_empty() {
                match wal::next_frame(&self.buf) {
                    Ok((frame, used)) => {
                        self.buf.drain(..used);
                        self.pos.offset += used as u64;
                        return Ok(match frame {
                            Frame::Record(r) => Step::Record(r, self.pos),
                            Frame::Unknown(_) => Step::Skipped(self.pos),
                        });
                    }
                    Err(FrameError::Incomplete) => {}
                    Err(FrameError::Corrupt(reason)) => {
                        let segment = self.pos.segment;
                        match self.later_segment()? {
                            Some(next) => self.move_to(next),
                            // Wait: the writer moves on to a new segment eventually.
                            None => return Ok(Step::Idle),
                        }
                        return Ok(Step::Damaged { segment, reason });
                    }
                }
            }
            if self.file.is_none() {
                let path = wal::segment_path(&self.dir, self.pos.segment);
                if !path.exists() {
                    let Some(next) = self.later_segment()? else {
                        return Ok(Step::Idle);
                    };
                    let from = self.pos.segment;
                    self.move_to(next);
                    return Ok(Step::Lost { from, to: next });
                }
            }
            if self.fill()? {
                continue;
            }
            // At the end of the file. Once a later segment exists this one
            // is complete; read it once more in case it grew meanwhile.
            let Some(next) = self.later_segment()? else {
                return Ok(Step::Idle);
            };
            if self.fill()? {
                continue;
            }
            if !self.buf.is_empty() {
                let segment = self.pos.segment;
                self.move_to(next);
                return Ok(Step::Damaged {
                    segment,
                    reason: "torn record at the end of a finished segment".into(),
                });
            }
            self.move_to(next);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Sample;
    use crate::storage::wal::Wal;

    fn labels(name: &str) -> Labels {
        Labels::from_pairs([("__name__", name)]).unwrap()
    }

    fn samples(id: u64, t: i64) -> Record {
        Record::Samples(vec![(id, Sample { t, v: t as f64 })])
    }

    fn drain(r: &mut WalReader) -> Vec<Step> {
        let mut out = Vec::new();
        loop {
            match r.step().unwrap() {
                Step::Idle => return out,
                s => out.push(s),
            }
        }
    }

    fn sample_times(steps: &[Step]) -> Vec<i64> {
        steps
            .iter()
            .flat_map(|s| match s {
                Step::Record(Record::Samples(v), _) => v.iter().map(|(_, s)| s.t).collect(),
                _ => vec![],
            })
            .collect()
    }

    #[test]
    fn follows_appends_and_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = Wal::open(dir.path()).unwrap();
        w.log(&[Record::Series(vec![(1, labels("a"))]), samples(1, 1)])
            .unwrap();
        let mut r = WalReader::new(dir.path(), Position::default());
        let steps = drain(&mut r);
        assert_eq!(steps.len(), 2);
        assert_eq!(sample_times(&steps), vec![1]);
        w.log(&[samples(1, 2)]).unwrap();
        w.rotate().unwrap();
        w.log(&[samples(1, 3)]).unwrap();
        let steps = drain(&mut r);
        assert_eq!(sample_times(&steps), vec![2, 3]);
        assert_eq!(r.position().segment, 1);
        // Resuming from a recorded position reads only what follows it.
        let mut again = WalReader::new(
            dir.path(),
            Position {
                segment: 0,
                offset: 0,
            },
        );
        let all = drain(&mut again);
        let Step::Record(_, after_first) = &all[1] else {
            panic!("{all:?}")
        };
        let mut resumed = WalReader::new(dir.path(), *after_first);
        assert_eq!(sample_times(&drain(&mut resumed)), vec![2, 3]);
    }

    #[test]
    fn unknown_record_types_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = Wal::open(dir.path()).unwrap();
        w.log(&[samples(1, 1)]).unwrap();
        drop(w);
        // A well-formed frame of a record type from a newer version.
        let body = [0x7fu8, 1, 2, 3];
        let mut frame = Vec::new();
        frame.extend_from_slice(&(body.len() as u32).to_le_bytes());
        frame.extend_from_slice(&crc32c::crc32c(&body).to_le_bytes());
        frame.extend_from_slice(&body);
        let seg = wal::segment_path(dir.path(), 0);
        let mut data = std::fs::read(&seg).unwrap();
        data.extend_from_slice(&frame);
        let mut tail = Vec::new();
        wal::encode(&samples(1, 2), &mut tail);
        data.extend_from_slice(&tail);
        std::fs::write(&seg, data).unwrap();
        let mut r = WalReader::new(dir.path(), Position::default());
        let steps = drain(&mut r);
        assert!(matches!(steps[1], Step::Skipped(_)), "{steps:?}");
        assert_eq!(sample_times(&steps), vec![1, 2]);
    }

    #[test]
    fn deleted_segments_are_reported_lost() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = Wal::open(dir.path()).unwrap();
        w.log(&[samples(1, 1)]).unwrap();
        w.rotate().unwrap();
        w.log(&[samples(1, 2)]).unwrap();
        w.rotate().unwrap();
        w.log(&[samples(1, 3)]).unwrap();
        std::fs::remove_file(wal::segment_path(dir.path(), 0)).unwrap();
        std::fs::remove_file(wal::segment_path(dir.path(), 1)).unwrap();
        let mut r = WalReader::new(dir.path(), Position::default());
        let steps = drain(&mut r);
        assert!(
            matches!(steps[0], Step::Lost { from: 0, to: 2 }),
            "{steps:?}"
        );
        assert_eq!(sample_times(&steps), vec![3]);
    }

    #[test]
    fn series_come_from_checkpoint_and_earlier_segments() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = Wal::open(dir.path()).unwrap();
        w.log(&[Record::Series(vec![(1, labels("a"))])]).unwrap();
        let closed = w.rotate().unwrap();
        wal::write_checkpoint(dir.path(), closed, [Record::Series(vec![(1, labels("a"))])])
            .unwrap();
        w.log(&[Record::Series(vec![(2, labels("b"))]), samples(2, 5)])
            .unwrap();
        let (n, cp) = checkpoint_series(dir.path()).unwrap().unwrap();
        assert_eq!((n, cp.len()), (0, 1));
        let end = end_of_wal(dir.path()).unwrap();
        assert_eq!(end.segment, 1);
        let before = series_before(dir.path(), end).unwrap();
        assert_eq!(before, vec![(2, labels("b"))]);
    }
}
